from django.urls import include, path

from hodei.urls import router
from workermanager.api.views import (
    AgentViewSet,
    ExecutionViewSet,
    ManagedWorkerViewSet,
    PoolViewSet,
)

api = router()
api.register("executions", ExecutionViewSet, basename="execution")
api.register("workers", ManagedWorkerViewSet, basename="managedworker")
api.register("pools", PoolViewSet, basename="workerpool")
# The agent protocol, for agents over HTTP (worker credentials only).
api.register("agent", AgentViewSet, basename="agent")

urlpatterns = [
    path("api/v1/execute", ExecutionViewSet.as_view({"post": "create"}), name="execute"),
    path("api/v1/", include(api.urls)),
]
