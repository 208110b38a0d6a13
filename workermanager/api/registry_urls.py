"""The worker registry's paths. The scheduler service serves them (:8081, as the seed
says); the worker manager's own /api/v1/workers is its managed workers."""

from django.urls import path

from workermanager.api.views import WorkerViewSet

worker_list = WorkerViewSet.as_view({"get": "list", "post": "create"})

urlpatterns = [
    path("api/v1/workers", worker_list, name="worker-list"),
    path("api/v1/workers/<str:pk>", WorkerViewSet.as_view({"get": "retrieve"})),
    path("api/v1/workers/<str:pk>/heartbeat", WorkerViewSet.as_view({"post": "heartbeat"})),
    path("api/v1/workers/<str:pk>/drain", WorkerViewSet.as_view({"post": "drain"})),
    path("api/v1/workers/<str:pk>/undrain", WorkerViewSet.as_view({"post": "undrain"})),
]
