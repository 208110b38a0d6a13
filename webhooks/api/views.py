from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from hodei.api.views import validated
from webhooks import services
from webhooks.api.filters import DeliveryFilter, SubscriptionFilter
from webhooks.api.serializers import (
    DeliverySerializer,
    SubscriptionInputSerializer,
    SubscriptionSerializer,
)
from webhooks.models import Delivery, Subscription


def deliveries_with_attempts():
    return Delivery.objects.select_related("event").prefetch_related("attempts")


@extend_schema(tags=["webhooks"])
class SubscriptionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Webhook subscriptions: signed JSON POSTs of events to a URL, retried for a day."""

    queryset = Subscription.objects.all()
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilter
    action_permissions = {"test": "change", "deliveries": "webhooks.view_delivery"}

    @extend_schema(
        request=SubscriptionInputSerializer,
        responses={201: SubscriptionSerializer},
        description="Without `secret`, one is generated and returned in `secret`, this once.",
    )
    def create(self, request):
        data = validated(SubscriptionInputSerializer, request.data, echo=SubscriptionSerializer)
        subscription, generated = services.subscription_create(**data)
        body = SubscriptionSerializer(subscription).data
        if generated:
            body["secret"] = generated
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=SubscriptionInputSerializer, responses=SubscriptionSerializer)
    def update(self, request, pk=None):
        return self._update(request, partial=False)

    @extend_schema(request=SubscriptionInputSerializer, responses=SubscriptionSerializer)
    def partial_update(self, request, pk=None):
        return self._update(request, partial=True)

    def _update(self, request, *, partial: bool):
        subscription = self.get_object()
        data = validated(
            SubscriptionInputSerializer, request.data, partial=partial, echo=SubscriptionSerializer
        )
        subscription = services.subscription_update(subscription=subscription, **data)
        return Response(SubscriptionSerializer(subscription).data)

    def destroy(self, request, pk=None):
        """Delete the subscription and its deliveries."""
        services.subscription_delete(subscription=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a `webhook.test` event to this subscription alone. 202 with its pending
        delivery: the event relay sends it within a second (follow it in `deliveries`).
        409 for a disabled subscription."""
        delivery = services.subscription_test(subscription=self.get_object())
        delivery = deliveries_with_attempts().get(pk=delivery.pk)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=DeliverySerializer(many=True),
        operation_id="api_v1_webhooks_subscription_deliveries_list",
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """This subscription's deliveries, newest first, each with its attempts."""
        subscription = self.get_object()
        page = self.paginate_queryset(deliveries_with_attempts().filter(subscription=subscription))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


@extend_schema(tags=["webhooks"])
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deliveries of every subscription, newest first (`?status=failed`,
    `?subscription_id=`, `?type=`), each with its attempts."""

    queryset = deliveries_with_attempts()
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter
    action_permissions = {"redeliver": "change"}

    @extend_schema(request=None, responses=DeliverySerializer)
    @action(detail=True, methods=["post"])
    def redeliver(self, request, pk=None):
        """Send the delivery again now, with the same `X-Hodei-Delivery` id, retrying as a
        new one would. 409 when its subscription is disabled."""
        delivery = services.delivery_redeliver(delivery=self.get_object())
        return Response(DeliverySerializer(deliveries_with_attempts().get(pk=delivery.pk)).data)
