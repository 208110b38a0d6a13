from django.db import models


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # to be sent, or sent and to be retried at next_attempt_at
    SUCCEEDED = "succeeded"  # a 2xx answer
    FAILED = "failed"  # retried for HODEI_WEBHOOK_RETRY_HOURS without a 2xx answer
