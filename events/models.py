from django.db import models

from hodei.lib import clock


class Event(models.Model):
    """One thing that happened, worth telling (the outbox): written in the same
    transaction as the change it tells of, so it exists if and only if the change
    committed. The relay (events.relay) publishes it to NATS and hands it to the
    consumers registered with ``events.hooks.consumers`` (webhooks)."""

    id = models.BigAutoField(primary_key=True)  # the order events happened in
    type = models.CharField(max_length=64, help_text="Such as execution.finished.")
    subject = models.CharField(
        max_length=80,
        help_text="What it is about, as kind:id; events of one subject are published in order.",
    )
    subject_ids = models.JSONField(
        default=dict, help_text="Ids of what it concerns: execution_id, job_id, pipeline_id..."
    )
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=clock.now)
    published_at = models.DateTimeField(
        null=True, blank=True, help_text="When NATS JetStream acknowledged it."
    )
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When the consumers (webhooks) took it."
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(published_at__isnull=True),
                name="event_unpublished_idx",
            ),
            models.Index(
                fields=["id"],
                condition=models.Q(dispatched_at__isnull=True),
                name="event_undispatched_idx",
            ),
            models.Index(fields=["created_at"], name="event_created_idx"),
            models.Index(fields=["type", "-id"], name="event_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.subject} #{self.id}"

    def as_message(self) -> dict:
        """The event as NATS and webhook receivers get it."""
        return {
            "id": self.id,
            "type": self.type,
            "subject": self.subject,
            **self.subject_ids,
            "created_at": clock.iso(self.created_at),
            "data": self.payload,
        }
