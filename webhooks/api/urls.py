from django.urls import include, path

from hodei.urls import router
from webhooks.api.views import DeliveryViewSet, SubscriptionViewSet

api = router()
# Before "webhooks": "webhooks/deliveries" is not a subscription's id.
api.register("webhooks/deliveries", DeliveryViewSet, basename="webhookdelivery")
api.register("webhooks", SubscriptionViewSet, basename="webhook")

urlpatterns = [path("api/v1/", include(api.urls))]
