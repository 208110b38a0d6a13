from django_filters import rest_framework as filters

from events.types import EVENT_TYPES
from webhooks.choices import DeliveryStatus
from webhooks.models import Delivery, Subscription


class SubscriptionFilter(filters.FilterSet):
    enabled = filters.BooleanFilter()

    class Meta:
        model = Subscription
        fields = ["enabled"]


class DeliveryFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=DeliveryStatus.choices)
    subscription_id = filters.UUIDFilter(field_name="subscription_id")
    type = filters.ChoiceFilter(
        field_name="event__type", choices=[(name, name) for name in sorted(EVENT_TYPES)]
    )

    class Meta:
        model = Delivery
        fields = ["status", "subscription_id", "type"]
