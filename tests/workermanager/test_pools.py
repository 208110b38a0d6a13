"""Worker pools: the API (/api/v1/pools on :8082), its validation and permissions, and
the reconciler's decisions against a stand-in provider (no processes: the real ones are
in test_pool_processes.py)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection

from accounts.roles import OPERATORS, VIEWERS
from events.models import Event
from hodei.lib import clock
from tests.conftest import client_for
from tests.factories import (
    ExecutionFactory,
    ManagedWorkerFactory,
    PoolScalingFactory,
    WorkerPoolFactory,
    admin_form_data,
    messages_of,
    role_user,
)
from workermanager import pools
from workermanager.choices import ExecutionStatus, ManagedWorkerStatus, PoolStatus, WorkerStatus
from workermanager.models import Execution, ManagedWorker, PoolScaling, Worker, WorkerPool
from workermanager.providers import Launch, ProviderError

M = ManagedWorkerStatus


# -- the API ------------------------------------------------------------------------------


@pytest.fixture
def pool_body():
    return {"worker_type": "builds", "min_workers": 0, "max_workers": 3, "idle_seconds": 60}


def test_create_returns_the_pool_and_lists_are_bare_arrays(wm, pool_body):
    response = wm.post("/api/v1/pools", pool_body, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["worker_type"] == "builds"
    assert (body["min_workers"], body["max_workers"], body["concurrency"]) == (0, 3, 1)
    assert (body["provider"], body["status"]) == ("local", "active")
    assert (body["current_workers"], body["draining_workers"], body["desired_workers"]) == (0, 0, 0)
    assert body["scale_up_after_seconds"] == 30 and body["idle_seconds"] == 60

    listed = wm.get("/api/v1/pools")
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()] == [body["id"]]
    assert wm.get(f"/api/v1/pools/{body['id']}").json() == body
    assert wm.get("/api/v1/pools?worker_type=other").json() == []


def test_patch_changes_the_bounds(wm):
    pool = WorkerPoolFactory(max_workers=2)
    response = wm.patch(
        f"/api/v1/pools/{pool.pk}", {"max_workers": 5, "min_workers": 1}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["min_workers"], response.json()["max_workers"]) == (1, 5)
    pool.refresh_from_db()
    assert (pool.min_workers, pool.max_workers) == (1, 5)
    # A body read with GET can be sent back.
    again = wm.put(f"/api/v1/pools/{pool.pk}", response.json(), format="json")
    assert again.status_code == 200, again.content


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"min_workers": 4, "max_workers": 3}, "min_workers"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_workers": 11}, "max_workers"),  # HODEI_MAX_MANAGED_WORKERS (10)
        ({"concurrency": 17}, "concurrency"),  # HODEI_MAX_MANAGED_CONCURRENCY (16)
        ({"concurrency": 0}, "concurrency"),
        ({"min_workers": -1}, "min_workers"),
        ({"idle_seconds": 0}, "idle_seconds"),
        ({"scale_up_after_seconds": -5}, "scale_up_after_seconds"),
        ({"provider": "docker"}, "provider"),
        ({"worker_type": "bad type!"}, "worker_type"),
        ({"worker_type": ""}, "worker_type"),
        ({"labels": {"zone": 1}}, "labels"),
        ({"max_worker": 3}, "max_worker"),  # a misspelt field
    ],
)
def test_bad_pools_are_400_naming_the_field(wm, pool_body, body, field):
    response = wm.post("/api/v1/pools", {**pool_body, **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"], response.json()
    assert not WorkerPool.objects.exists()


def test_one_pool_per_worker_type(wm, pool_body):
    assert wm.post("/api/v1/pools", pool_body, format="json").status_code == 201
    response = wm.post("/api/v1/pools", pool_body, format="json")
    assert response.status_code == 400
    assert "worker_type" in response.json()["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"min_workers": 3, "max_workers": 2}, "min_workers"),
        ({"min_workers": 3}, "min_workers"),  # above the stored max (2)
        ({"worker_type": "other"}, "worker_type"),
        ({"max_workers": 0}, "max_workers"),
    ],
)
def test_bad_patches_are_400_and_change_nothing(wm, body, field):
    pool = WorkerPoolFactory(worker_type="builds", max_workers=2)
    response = wm.patch(f"/api/v1/pools/{pool.pk}", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    pool.refresh_from_db()
    assert (pool.worker_type, pool.min_workers, pool.max_workers) == ("builds", 0, 2)


def test_delete_without_live_workers_is_immediate(wm):
    pool = WorkerPoolFactory()
    ManagedWorkerFactory(pool=pool, status=M.STOPPED)
    PoolScalingFactory(pool=pool)
    assert wm.delete(f"/api/v1/pools/{pool.pk}").status_code == 204
    assert not WorkerPool.objects.exists() and not PoolScaling.objects.exists()
    assert ManagedWorker.objects.get().pool_id is None  # its history stays
    assert wm.delete(f"/api/v1/pools/{pool.pk}").status_code == 404


def test_delete_with_live_workers_drains_them_first(wm):
    pool = WorkerPoolFactory()
    ManagedWorkerFactory(pool=pool, status=M.RUNNING)
    response = wm.delete(f"/api/v1/pools/{pool.pk}")
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["current_workers"]) == ("deleting", 1)
    assert WorkerPool.objects.get().status == PoolStatus.DELETING
    # Nothing to change on a pool that is going; deleting again is harmless.
    assert (
        wm.patch(f"/api/v1/pools/{pool.pk}", {"max_workers": 2}, format="json").status_code == 409
    )
    assert wm.delete(f"/api/v1/pools/{pool.pk}").status_code == 202


def test_scalings_are_listed_newest_first_with_link_pagination(wm):
    pool = WorkerPoolFactory()
    first = PoolScalingFactory(pool=pool, reason="min", from_workers=0, to_workers=1)
    second = PoolScalingFactory(pool=pool, reason="idle", from_workers=1, to_workers=0)
    PoolScalingFactory()  # another pool's
    response = wm.get(f"/api/v1/pools/{pool.pk}/scalings")
    assert response.status_code == 200
    assert [s["id"] for s in response.json()] == [second.pk, first.pk]
    assert response.json()[0] == {
        "id": second.pk,
        "pool_id": str(pool.pk),
        "at": response.json()[0]["at"],
        "from_workers": 1,
        "to_workers": 0,
        "reason": "idle",
        "detail": second.detail,
    }
    page = wm.get(f"/api/v1/pools/{pool.pk}/scalings?limit=1")
    assert [s["id"] for s in page.json()] == [second.pk]
    assert 'rel="next"' in page["Link"]


def test_listing_pools_uses_a_constant_number_of_queries(wm, django_assert_max_num_queries):
    for _ in range(5):
        pool = WorkerPoolFactory()
        ManagedWorkerFactory(pool=pool, status=M.RUNNING)
        ManagedWorkerFactory(pool=pool, status=M.STOPPING)
    with django_assert_max_num_queries(3):  # the token, the page, (a session check)
        body = wm.get("/api/v1/pools").json()
    assert [(p["current_workers"], p["draining_workers"]) for p in body] == [(1, 1)] * 5


def test_managed_workers_show_their_pool(wm):
    pool = WorkerPoolFactory()
    row = ManagedWorkerFactory(pool=pool)
    assert wm.get(f"/api/v1/workers/{row.pk}").json()["pool_id"] == str(pool.pk)
    assert [w["id"] for w in wm.get(f"/api/v1/workers?pool_id={pool.pk}").json()] == [str(row.pk)]


def test_viewers_read_pools_and_operators_change_them(db, pool_body):
    pool = WorkerPoolFactory()
    PoolScalingFactory(pool=pool)
    viewer = client_for("workermanager", role_user(VIEWERS))
    for url in ("/api/v1/pools", f"/api/v1/pools/{pool.pk}", f"/api/v1/pools/{pool.pk}/scalings"):
        assert viewer.get(url).status_code == 200, url
    assert viewer.post("/api/v1/pools", pool_body, format="json").status_code == 403
    assert (
        viewer.patch(f"/api/v1/pools/{pool.pk}", {"max_workers": 1}, format="json").status_code
        == 403
    )
    assert viewer.delete(f"/api/v1/pools/{pool.pk}").status_code == 403
    assert WorkerPool.objects.get().max_workers == 3

    operator = client_for("workermanager", role_user(OPERATORS))
    assert operator.post("/api/v1/pools", pool_body, format="json").status_code == 201
    assert (
        operator.patch(f"/api/v1/pools/{pool.pk}", {"max_workers": 1}, format="json").status_code
        == 200
    )
    assert operator.delete(f"/api/v1/pools/{pool.pk}").status_code == 204


def test_nobody_else_sees_pools(make_client):
    pool = WorkerPoolFactory()
    nobody = make_client("workermanager")
    assert nobody.get("/api/v1/pools").status_code == 403
    assert nobody.get(f"/api/v1/pools/{pool.pk}/scalings").status_code == 403
    assert make_client("workermanager", anonymous=True).get("/api/v1/pools").status_code == 401


def test_the_openapi_document_has_the_pools(wm):
    schema = wm.get("/openapi.json").json()
    for path, methods in [
        ("/api/v1/pools", {"get", "post"}),
        ("/api/v1/pools/{id}", {"get", "put", "patch", "delete"}),
        ("/api/v1/pools/{id}/scalings", {"get"}),
    ]:
        assert set(schema["paths"][path]) == methods, path
        for operation in schema["paths"][path].values():
            assert operation["tags"] == ["pools"]
    assert set(schema["paths"]["/api/v1/pools/{id}"]["delete"]["responses"]) == {"202", "204"}


# -- the admin ----------------------------------------------------------------------------


def test_the_admin_shows_live_agents_and_the_latest_20_scalings(
    operator, django_assert_max_num_queries
):
    pool = WorkerPoolFactory(worker_type="builds", desired_workers=2)
    ManagedWorkerFactory(pool=pool, status=M.RUNNING)
    ManagedWorkerFactory(pool=pool, status=M.STOPPING)
    scalings = [PoolScalingFactory(pool=pool, detail=f"decision {i}") for i in range(25)]
    changelist = operator.get("/admin/workermanager/workerpool/")
    assert changelist.status_code == 200
    assert "1 (2), 1 draining" in changelist.content.decode()
    with django_assert_max_num_queries(15):
        page = operator.get(f"/admin/workermanager/workerpool/{pool.pk}/change/")
    html = page.content.decode()
    assert "1 (2), 1 draining" in html
    assert "decision 24" in html and "decision 5" in html and "decision 4" not in html
    assert len(scalings) == 25
    assert f"?pool__id__exact={pool.pk}" in html
    agents = operator.get(f"/admin/workermanager/managedworker/?pool__id__exact={pool.pk}")
    assert agents.status_code == 200 and len(agents.context["cl"].result_list) == 2


def test_the_admin_adds_pools_through_the_same_validation(operator):
    page = operator.get("/admin/workermanager/workerpool/add/")
    data = admin_form_data(page, worker_type="builds", min_workers="3", max_workers="2")
    response = operator.post("/admin/workermanager/workerpool/add/", data)
    assert response.status_code == 200  # the form again, with the error
    assert "At most max_workers (2)." in response.content.decode()
    data.update(min_workers="1", provider="local")
    response = operator.post("/admin/workermanager/workerpool/add/", data, follow=True)
    assert response.status_code == 200
    pool = WorkerPool.objects.get()
    assert (pool.worker_type, pool.min_workers, pool.max_workers) == ("builds", 1, 2)


def test_deleting_a_pool_in_the_admin_drains_its_agents(operator):
    pool = WorkerPoolFactory()
    ManagedWorkerFactory(pool=pool, status=M.RUNNING)
    response = operator.post(
        f"/admin/workermanager/workerpool/{pool.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert response.status_code == 200
    messages = messages_of(response)
    assert any("draining its agents" in m for m in messages)
    assert not any("deleted successfully" in m for m in messages)
    assert WorkerPool.objects.get().status == PoolStatus.DELETING
    # Nothing left to change on it.
    change = operator.get(f"/admin/workermanager/workerpool/{pool.pk}/change/")
    assert 'name="_save"' not in change.content.decode()


# -- the reconciler, with a stand-in provider ---------------------------------------------


# The reconciler refuses to run inside a transaction (it launches agents after its
# decisions commit): these tests commit as it does.
reconciler_test = pytest.mark.django_db(transaction=True)


class FakeProvider:
    """Agents that live in a dict: started, alive, killed or stopped by the test."""

    name = "local"

    def __init__(self):
        self.alive: dict[str, bool] = {}
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.refuse = ""

    def start(self, managed, *, credential):
        assert credential.startswith("hodei_wkr_")
        if self.refuse:
            raise ProviderError(self.refuse)
        self.started.append(managed.name)
        self.alive[managed.name] = True
        return Launch(pid=None, host=f"fake-{managed.name}")

    def is_alive(self, managed):
        return self.alive.get(managed.name, False)

    def exit_reason(self, managed):
        return "agent process exited (code -9)"

    def stop(self, managed, *, grace_seconds):
        self.stopped.append(managed.name)
        self.alive[managed.name] = False


@pytest.fixture
def provider(monkeypatch):
    fake = FakeProvider()
    monkeypatch.setattr("workermanager.pools.get_provider", lambda name: fake)
    monkeypatch.setattr("workermanager.managed.get_provider", lambda name: fake)
    return fake


def register_agents() -> int:
    """The started agents register (as their HTTP registration does)."""
    starting = ManagedWorker.objects.filter(status=M.STARTING).values("name")
    return Worker.objects.filter(name__in=starting).update(
        status=WorkerStatus.ONLINE, last_heartbeat_at=clock.now()
    )


def live(pool) -> list[ManagedWorker]:
    return list(pool.workers.filter(status__in=[M.STARTING, M.RUNNING]).order_by("id"))


def queue(n: int, worker_type: str = "builds", **fields) -> list[Execution]:
    return [ExecutionFactory(job=None, worker_type=worker_type, **fields) for _ in range(n)]


def decisions(pool) -> list[tuple[int, int, str]]:
    return [(s.from_workers, s.to_workers, s.reason) for s in pool.scalings.order_by("id").all()]


@reconciler_test
def test_min_workers_start_and_the_decision_is_recorded(provider):
    pool = WorkerPoolFactory(worker_type="builds", min_workers=2, max_workers=4, concurrency=2)
    result = pools.pools_reconcile()
    assert (result.started, len(provider.started)) == (2, 2)
    rows = live(pool)
    assert [(w.status, w.type, w.concurrency, w.provider) for w in rows] == [
        (M.STARTING, "builds", 2, "local")
    ] * 2
    assert all(w.host.startswith("fake-") for w in rows)
    assert decisions(pool) == [(0, 2, "min")]
    event = Event.objects.get(type="pool.scaled")
    assert event.payload == {
        "pool": str(pool.pk),
        "worker_type": "builds",
        "from": 0,
        "to": 2,
        "reason": "min",
    }
    assert event.subject_ids == {"pool_id": str(pool.pk)}

    # Registered agents are running; nothing else changes, however often it runs.
    register_agents()
    for _ in range(3):
        pools.pools_reconcile()
    assert [w.status for w in live(pool)] == [M.RUNNING] * 2
    assert all(w.worker.status == WorkerStatus.ONLINE for w in live(pool))
    assert len(provider.started) == 2 and decisions(pool) == [(0, 2, "min")]
    pool.refresh_from_db()
    assert pool.desired_workers == 2 and pool.reconciled_at is not None


@reconciler_test
def test_queued_work_beyond_the_free_capacity_starts_agents_up_to_max(provider):
    pool = WorkerPoolFactory(worker_type="builds", max_workers=3, concurrency=2)
    queue(3)
    queue(5, worker_type="other")  # another type's
    queue(5, worker_type="")  # any worker's: served by whatever runs, never a reason to grow
    pools.pools_reconcile()
    assert decisions(pool) == [(0, 2, "queue")]  # ceil(3 / 2)
    assert "3 queued execution(s) of type builds, 0 free slot(s)" in pool.scalings.get().detail
    # Starting agents count as capacity: no second wave while they start.
    pools.pools_reconcile()
    assert len(live(pool)) == 2
    queue(10)
    pools.pools_reconcile()
    assert len(live(pool)) == 3  # max_workers
    assert decisions(pool)[-1] == (2, 3, "queue")


@reconciler_test
def test_an_old_queued_execution_adds_one_agent_even_with_free_capacity(provider):
    pool = WorkerPoolFactory(
        worker_type="builds", min_workers=1, max_workers=3, concurrency=4, scale_up_after_seconds=30
    )
    pools.pools_reconcile()
    register_agents()
    pools.pools_reconcile()
    queue(1)  # fits the free capacity, and is young: nothing to do
    pools.pools_reconcile()
    assert len(live(pool)) == 1
    queue(1, available_at=clock.now() - timedelta(seconds=31))
    pools.pools_reconcile()
    assert decisions(pool)[-1] == (1, 2, "wait")
    assert "has waited 31 s" in pool.scalings.order_by("-id").first().detail
    # Not again while that agent starts.
    pools.pools_reconcile()
    assert len(live(pool)) == 2


@reconciler_test
def test_a_dead_agent_is_replaced_and_its_executions_retried(provider):
    pool = WorkerPoolFactory(worker_type="builds", min_workers=1, max_workers=2)
    pools.pools_reconcile()
    register_agents()
    pools.pools_reconcile()
    (victim,) = live(pool)
    running = ExecutionFactory(
        job=None, worker_type="builds", status="running", worker=victim.worker
    )
    provider.alive[victim.name] = False  # kill -9
    result = pools.pools_reconcile()
    assert (result.failed, result.started) == (1, 1)
    victim.refresh_from_db()
    assert victim.status == M.FAILED and "code -9" in victim.failure_reason
    assert victim.worker.status == WorkerStatus.OFFLINE
    assert victim.worker.credentials.get().revoked_at is not None
    running.refresh_from_db()
    assert running.status == ExecutionStatus.LOST
    assert decisions(pool)[-1] == (0, 1, "replace")
    assert Event.objects.filter(type="worker.lost").count() == 1


@reconciler_test
def test_a_launch_the_provider_refuses_is_retried_three_times_a_minute(provider):
    pool = WorkerPoolFactory(worker_type="builds", min_workers=1)
    provider.refuse = "no room on the node"
    for _ in range(6):
        pools.pools_reconcile()
    failed = pool.workers.filter(status=M.FAILED)
    assert failed.count() == pools.START_FAILURES_PER_MINUTE
    assert all(w.failure_reason == "no room on the node" for w in failed)
    assert [d[2] for d in decisions(pool)] == ["min", "replace", "replace"]


@reconciler_test
def test_idle_agents_are_drained_then_stopped_above_the_minimum(provider):
    pool = WorkerPoolFactory(worker_type="builds", min_workers=1, max_workers=3, idle_seconds=60)
    queue(3)
    pools.pools_reconcile()
    register_agents()
    pools.pools_reconcile()
    Execution.objects.filter(worker_type="builds").update(
        status="succeeded", finished_at=clock.now()
    )
    pools.pools_reconcile()
    assert len(live(pool)) == 3  # idle, but not for long enough

    later = clock.now() + timedelta(seconds=61)
    busy = live(pool)[0]
    ExecutionFactory(job=None, worker_type="builds", status="running", worker=busy.worker)
    recent = live(pool)[1]
    ExecutionFactory(
        job=None, worker_type="builds", status="succeeded", worker=recent.worker,
        finished_at=later - timedelta(seconds=5),
    )  # fmt: skip
    pools.pools_reconcile(now=later)
    # The third only: the first runs something, the second ran something 5 s ago.
    assert decisions(pool)[-1] == (3, 2, "idle")
    idle = pool.workers.get(status=M.STOPPING)
    assert idle.worker.status == WorkerStatus.DRAINING
    assert idle.pk not in (busy.pk, recent.pk)
    pools.pools_reconcile()  # the health step stops it: it runs nothing
    idle.refresh_from_db()
    assert idle.status == M.STOPPED and provider.stopped == [idle.name]
    assert idle.worker.status == WorkerStatus.OFFLINE


@reconciler_test
def test_a_drained_agent_is_stopped_only_once_its_commands_have_ended(provider):
    pool = WorkerPoolFactory(worker_type="builds", min_workers=0, max_workers=2)
    queue(2)
    pools.pools_reconcile()
    register_agents()
    pools.pools_reconcile()
    executions = list(Execution.objects.filter(worker_type="builds"))
    for execution, agent in zip(executions, live(pool), strict=True):
        Execution.objects.filter(pk=execution.pk).update(status="running", worker=agent.worker)
    response = client_for("workermanager", role_user(OPERATORS)).patch(
        f"/api/v1/pools/{pool.pk}", {"max_workers": 1}, format="json"
    )
    assert response.status_code == 200
    pools.pools_reconcile()
    assert decisions(pool)[-1] == (2, 1, "max")
    drained = pool.workers.get(status=M.STOPPING)
    for _ in range(3):
        pools.pools_reconcile()
    assert provider.stopped == []  # its command runs
    drained.refresh_from_db()
    assert drained.status == M.STOPPING and drained.worker.status == WorkerStatus.DRAINING
    Execution.objects.filter(worker=drained.worker).update(status="succeeded")
    pools.pools_reconcile()
    assert provider.stopped == [drained.name]
    # The pool did not start another: it is at its new max.
    assert len(live(pool)) == 1 and len(provider.started) == 2


@reconciler_test
def test_a_deleted_pool_drains_stops_and_goes(provider):
    pool = WorkerPoolFactory(worker_type="builds", min_workers=2, max_workers=2)
    pools.pools_reconcile()
    register_agents()
    pools.pools_reconcile()
    assert pools.pool_delete(pool=pool).status == PoolStatus.DELETING
    pools.pools_reconcile()  # drain
    assert decisions(pool)[-1] == (2, 0, "deleted")
    assert pool.workers.filter(status=M.STOPPING).count() == 2
    pools.pools_reconcile()  # stop (they run nothing), then the pool goes
    pools.pools_reconcile()
    assert not WorkerPool.objects.exists()
    assert ManagedWorker.objects.filter(status=M.STOPPED).count() == 2
    assert sorted(provider.stopped) == sorted(provider.started)


@reconciler_test
def test_the_managed_worker_quota_holds_across_pools(provider, settings):
    settings.HODEI_MAX_MANAGED_WORKERS = 3
    ManagedWorkerFactory(status=M.RUNNING, host="elsewhere")  # started through the API
    first = WorkerPoolFactory(worker_type="a", min_workers=1, max_workers=1)
    second = WorkerPoolFactory(worker_type="b", min_workers=2, max_workers=2)
    pools.pools_reconcile()
    assert (len(live(first)), len(live(second))) == (1, 1)
    assert decisions(second) == [(0, 1, "min")]
    assert "2 wanted, 1 allowed by HODEI_MAX_MANAGED_WORKERS" in second.scalings.get().detail
    pools.pools_reconcile()
    assert ManagedWorker.objects.exclude(status__in=[M.STOPPED, M.FAILED]).count() == 3


@reconciler_test
def test_a_starting_agent_that_never_registers_fails_and_is_stopped(provider, settings):
    settings.HODEI_WORKER_START_TIMEOUT_SECONDS = 5
    pool = WorkerPoolFactory(worker_type="builds", min_workers=1)
    pools.pools_reconcile()
    (starting,) = live(pool)
    ManagedWorker.objects.filter(pk=starting.pk).update(
        created_at=clock.now() - timedelta(seconds=6)
    )
    pools.pools_reconcile()
    starting.refresh_from_db()
    assert starting.status == M.FAILED
    assert starting.failure_reason == "agent did not register within 5 s"
    assert provider.stopped == [starting.name]
    assert decisions(pool)[-1] == (0, 1, "replace")


@pytest.mark.postgres
@reconciler_test
def test_two_reconcilers_at_once_decide_once(provider):
    pool = WorkerPoolFactory(worker_type="builds", max_workers=5, concurrency=1)
    queue(4)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def reconcile():
        try:
            barrier.wait()
            results.append(pools.pools_reconcile())
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reconcile) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sum(r.started for r in results) == 4
    assert len(live(pool)) == 4 and len(provider.started) == 4
    assert decisions(pool) == [(0, 4, "queue")]
    assert Event.objects.filter(type="pool.scaled").count() == 1
