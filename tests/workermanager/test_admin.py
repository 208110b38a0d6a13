"""The admin of executions and managed workers, driven through Django's test client."""

import json
import re
import socket
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.roles import OPERATORS
from hodei.lib import clock
from tests.factories import (
    ExecutionFactory,
    ExecutionLogFactory,
    JobFactory,
    ManagedWorkerFactory,
    UserFactory,
    WorkerFactory,
    action,
    admin_form_data,
    logged_in,
    messages_of,
    role_user,
    start,
)
from tests.processes import start_service, stop
from workermanager import managed as managed_module
from workermanager.agent_protocol import agent_register
from workermanager.choices import ExecutionStatus, ManagedWorkerStatus, Trigger, WorkerStatus
from workermanager.credentials import worker_credential_find
from workermanager.models import Execution, ManagedWorker, Worker
from workermanager.providers import Launch, ProviderError
from workermanager.selectors import LOG_PAGE as TAIL_PAGE
from workermanager.tasks import maintain_workers

pytestmark = pytest.mark.django_db

EXECUTIONS = "/admin/workermanager/execution/"
MANAGED = "/admin/workermanager/managedworker/"
S = ExecutionStatus


def detail(execution) -> str:
    return f"{EXECUTIONS}{execution.pk}/change/"


def tail(client, execution_or_id, offset=None):
    pk = getattr(execution_or_id, "pk", execution_or_id)
    params = {} if offset is None else {"offset": offset}
    return client.get(f"{EXECUTIONS}{pk}/tail/", params)


def operate(client, execution, operation, **kwargs):
    return client.post(f"{EXECUTIONS}{execution.pk}/operate/{operation}/", **kwargs)


def listed(client, **params) -> set:
    response = client.get(EXECUTIONS, params)
    assert response.status_code == 200
    assert "?e=1" not in response.get("Location", "")
    return set(response.context["cl"].result_list)


def finished(status=S.SUCCEEDED, **fields):
    start = clock.now() - timedelta(seconds=5)
    defaults = {
        "status": status,
        "started_at": start,
        "finished_at": start + timedelta(milliseconds=1500),
        "exit_code": 0 if status == S.SUCCEEDED else 1,
    }
    return ExecutionFactory(**{**defaults, **fields})


# -- the executions changelist ----------------------------------------------------------


def test_changelist_shows_badges_duration_exit_code_job_worker_trigger_attempt(operator):
    worker = WorkerFactory(name="agent-7")
    job = JobFactory(name="nightly-build")
    execution = finished(
        S.FAILED, job=job, worker=worker, exit_code=3, trigger=Trigger.SCHEDULE, attempt=2
    )
    response = operator.get(EXECUTIONS)
    assert response.status_code == 200
    html = response.content.decode()
    (row,) = [r for r in html.split("<tr")[1:] if str(execution.pk)[:13] in r]
    assert 'class="hodei-badge"' in row and ">failed<" in row
    assert "1500 ms" in row
    assert '<td class="field-exit_code">3</td>' in row
    assert f'href="/admin/orchestrator/job/{job.pk}/change/">nightly-build</a>' in row
    assert "agent-7" in row
    assert "field-trigger" not in row  # a filter, and on the execution's page
    assert "field-attempt" not in row  # on the execution's page, not in the list


def test_changelist_filters(operator):
    now = clock.now()
    worker, other_worker = WorkerFactory(), WorkerFactory()
    job, other_job = JobFactory(), JobFactory()
    # Created oldest first: ids are time-ordered (UUIDv7) and agree with created_at, which
    # the date hierarchy relies on.
    old = ExecutionFactory(job=job, created_at=datetime(2023, 5, 17, 12, tzinfo=UTC))
    a = ExecutionFactory(job=job, worker=worker, status=S.RUNNING, type="python")
    b = finished(job=other_job, worker=other_worker, trigger=Trigger.ADMIN, worker_type="gpu")
    assert listed(operator) == {a, b, old}
    assert listed(operator, status__exact="running") == {a}
    assert listed(operator, type__exact="python") == {a}
    assert listed(operator, trigger__exact="admin") == {b}
    assert listed(operator, worker_type="gpu") == {b}
    assert listed(operator, job__id__exact=str(job.pk)) == {a, old}
    assert listed(operator, worker__id__exact=str(other_worker.pk)) == {b}
    assert listed(operator, created_at__year="2023") == {old}
    assert listed(operator, created_at__year="2023", created_at__month="5") == {old}
    assert listed(operator, created_at__year=str(now.year)) == {a, b}
    page = operator.get(EXECUTIONS).content.decode()  # the date hierarchy's years
    assert '<nav class="toplinks">' in page
    assert "?created_at__year=2023" in page and f"?created_at__year={now.year}" in page
    JobFactory(worker_type="arm64")
    sidebar = operator.get(EXECUTIONS).context["cl"].filter_specs
    assert [f.title for f in sidebar] == ["status", "type", "trigger", "worker type"]
    assert ("arm64", "arm64") in sidebar[-1].lookup_choices
    assert ("default", "default") in sidebar[-1].lookup_choices  # the workers' type


def test_search_by_full_id_and_by_command(operator):
    wanted = ExecutionFactory(command="make release-candidate")
    other = ExecutionFactory(command="echo hello")
    assert listed(operator, q=str(wanted.pk)) == {wanted}
    assert listed(operator, q=f"  {other.pk} ") == {other}
    assert listed(operator, q="RELEASE-cand") == {wanted}
    assert listed(operator, q="nothing like this") == set()
    assert listed(operator, q="") == {wanted, other}


def test_search_by_the_short_id_the_list_shows(operator):
    wanted = ExecutionFactory(command="true")
    ExecutionFactory(command="true")
    short = str(wanted.pk)[:13]
    page = operator.get(EXECUTIONS).content.decode()
    assert short in page
    assert listed(operator, q=short) >= {wanted}
    assert listed(operator, q=str(wanted.pk).replace("-", "")[:20]) == {wanted}


def make_rows(n: int):
    jobs = JobFactory.create_batch(3)
    workers = WorkerFactory.create_batch(3)
    for i in range(n):
        finished(job=jobs[i % 3], worker=workers[i % 3], command=f"echo {i}\nmore")


def count_changelist_queries(client) -> int:
    client.get(EXECUTIONS)  # warm caches (content types, permissions of the session)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(EXECUTIONS)
    assert response.status_code == 200
    return len(queries)


def test_changelist_queries_do_not_grow_with_the_rows(operator, django_assert_max_num_queries):
    make_rows(5)
    few = count_changelist_queries(operator)
    make_rows(55)
    many = count_changelist_queries(operator)
    assert many == few
    with django_assert_max_num_queries(10):
        response = operator.get(EXECUTIONS)
    assert len(response.context["cl"].result_list) == 50


def test_changelist_never_counts_or_scans_the_whole_table(operator):
    make_rows(60)
    with CaptureQueriesContext(connection) as queries:
        response = operator.get(EXECUTIONS)
    assert response.status_code == 200
    execution_queries = [q["sql"] for q in queries if '"workermanager_execution"' in q["sql"]]
    assert execution_queries
    for sql in execution_queries:
        if "COUNT(" in sql.upper():
            assert re.search(r"COUNT\(\*\) FROM \(SELECT .* LIMIT \d+\) subquery", sql), sql
        # Sidebar filters cost no pass over the table; the page and the count are
        # LIMITed; only the date hierarchy reads created_at (an indexed column).
        assert "LIMIT" in sql or '"created_at"' in sql, sql
        assert "LIKE" not in sql, sql  # an empty search filters nothing
    assert len(response.context["cl"].result_list) == 50


# -- actions -------------------------------------------------------------------------------


def test_cancel_selected_cancels_queued_and_flags_running(operator):
    queued = ExecutionFactory()
    running = ExecutionFactory(status=S.RUNNING, worker=WorkerFactory(), started_at=clock.now())
    response = action(operator, EXECUTIONS, "cancel_selected", [queued, running])
    assert "2 execution(s) cancelled." in messages_of(response)
    queued.refresh_from_db()
    running.refresh_from_db()
    assert (queued.status, queued.cancel_requested) == (S.CANCELLED, True)
    assert queued.finished_at is not None
    assert (running.status, running.cancel_requested) == (S.RUNNING, True)


def test_cancel_of_a_finished_execution_says_so_and_changes_nothing(operator):
    done = finished()
    before = Execution.objects.filter(pk=done.pk).values().get()
    response = action(operator, EXECUTIONS, "cancel_selected", [done])
    messages = messages_of(response)
    assert not any("execution(s) cancelled" in m for m in messages), messages
    assert any("already succeeded" in m and "cannot be cancelled" in m for m in messages)
    assert Execution.objects.filter(pk=done.pk).values().get() == before


def test_retry_selected_queues_a_new_attempt(operator):
    failed = finished(S.FAILED, env={"A": "1"}, timeout_seconds=9)
    response = action(operator, EXECUTIONS, "retry_selected", [failed])
    assert "1 execution(s) retried." in messages_of(response)
    retry = Execution.objects.get(retry_of=failed)
    assert (retry.status, retry.trigger, retry.attempt) == (S.QUEUED, Trigger.ADMIN, 2)
    assert (retry.command, retry.env, retry.timeout_seconds, retry.job_id) == (
        failed.command,
        {"A": "1"},
        9,
        failed.job_id,
    )
    again = action(operator, EXECUTIONS, "retry_selected", [failed])
    assert any("already retried" in m for m in messages_of(again))
    assert Execution.objects.filter(retry_of=failed).count() == 1


def test_retry_of_a_queued_execution_is_refused_with_a_message(operator):
    queued = ExecutionFactory()
    response = action(operator, EXECUTIONS, "retry_selected", [queued])
    assert any("only a finished one can be retried" in m for m in messages_of(response))
    assert Execution.objects.count() == 1
    queued.refresh_from_db()
    assert queued.status == S.QUEUED


def test_viewer_has_no_execution_actions(viewer):
    queued = ExecutionFactory()
    page = viewer.get(EXECUTIONS).content.decode()
    assert "cancel_selected" not in page and "retry_selected" not in page
    response = action(viewer, EXECUTIONS, "cancel_selected", [queued])
    assert response.status_code == 200
    queued.refresh_from_db()
    assert queued.status == S.QUEUED


# -- the detail page -----------------------------------------------------------------------


def test_detail_page_shows_the_log_escaped(operator):
    execution = ExecutionFactory(status=S.RUNNING, started_at=clock.now())
    ExecutionLogFactory(execution=execution, seq=0, message="first line\n")
    ExecutionLogFactory(execution=execution, seq=1, stream="stderr", message="<b>oops</b>\n")
    response = operator.get(detail(execution))
    assert response.status_code == 200
    html = response.content.decode()
    # The chunks travel as JSON for the page's script to render (escaped: no markup).
    data = json.loads(re.search(r'id="hodei-log-data"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert [(c["stream"], c["message"]) for c in data] == [
        ("stdout", "first line\n"),
        ("stderr", "<b>oops</b>\n"),
    ]
    assert "<b>oops</b>" not in html
    assert 'data-next-offset="2"' in html
    assert 'data-complete="0"' in html and "(live)" in html
    assert f'data-tail-url="{EXECUTIONS}{execution.pk}/tail/"' in html
    assert "hodei/execution-tail.js" in html


def test_detail_page_has_the_fields_its_poller_updates(operator):
    execution = ExecutionFactory(status=S.RUNNING, started_at=clock.now())
    html = re.sub(r"\s+", " ", operator.get(detail(execution)).content.decode())
    # static/hodei/execution-tail.js updates ".field-<name> .readonly" in place.
    assert re.search(
        r'field-status_badge">.*?<div class="readonly"><span class="hodei-badge"[^>]*>running<',
        html,
    )
    for name in ("exit_code", "duration"):
        assert re.search(rf'field-{name}">.*?<div class="readonly">', html), name
    assert 'id="hodei-log-state"' in html


def test_detail_page_of_a_finished_execution_is_complete(operator):
    execution = finished()
    ExecutionLogFactory(execution=execution, seq=0)
    html = operator.get(detail(execution)).content.decode()
    assert 'data-complete="1"' in html and "(complete)" in html


def test_detail_page_of_a_long_finished_log_keeps_tailing_past_the_first_page(operator):
    execution = finished()
    for seq in range(TAIL_PAGE + 3):
        ExecutionLogFactory(execution=execution, seq=seq, message=f"line {seq}\n")
    html = operator.get(detail(execution)).content.decode()
    assert f"line {TAIL_PAGE - 1}\\n" in html
    assert f"line {TAIL_PAGE}\\n" not in html
    # The rest is fetched by the page's poller, which must therefore run.
    assert 'data-complete="0"' in html
    assert f'data-next-offset="{TAIL_PAGE}"' in html
    rest = tail(operator, execution, TAIL_PAGE).json()
    assert [c["message"] for c in rest["chunks"]] == [
        f"line {s}\n" for s in range(TAIL_PAGE, TAIL_PAGE + 3)
    ]
    assert rest["complete"] is True


def test_detail_buttons_follow_the_state_and_the_role(operator, viewer):
    queued = ExecutionFactory()
    done = finished()
    # Both are on the page (its script shows the one that applies as the state moves).
    queued_page = operator.get(detail(queued)).content.decode()
    assert '<li id="hodei-cancel-item">' in queued_page
    assert '<li id="hodei-retry-item" hidden>' in queued_page
    done_page = operator.get(detail(done)).content.decode()
    assert '<li id="hodei-cancel-item" hidden>' in done_page
    assert '<li id="hodei-retry-item">' in done_page
    for execution in (queued, done):
        page = viewer.get(detail(execution))
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="hodei-cancel"' not in html and 'id="hodei-retry"' not in html


def test_tail_returns_chunks_from_the_offset_and_the_state(operator, viewer):
    execution = ExecutionFactory(status=S.RUNNING, started_at=clock.now())
    for seq in range(5):
        ExecutionLogFactory(execution=execution, seq=seq, message=f"m{seq}")
    body = tail(operator, execution, 2).json()
    assert [c["message"] for c in body["chunks"]] == ["m2", "m3", "m4"]
    assert body["chunks"][0]["stream"] == "stdout"
    assert (body["next_offset"], body["complete"], body["status"]) == (5, False, "running")
    assert body["exit_code"] is None

    empty = tail(operator, execution, 5).json()
    assert (empty["chunks"], empty["next_offset"], empty["complete"]) == ([], 5, False)

    ExecutionLogFactory(execution=execution, seq=5, message="m5")
    execution.settle(status=S.SUCCEEDED, exit_code=0, now=clock.now())
    done = tail(viewer, execution, 5).json()  # viewers watch too
    assert [c["message"] for c in done["chunks"]] == ["m5"]
    assert (done["next_offset"], done["complete"], done["status"]) == (6, True, "succeeded")
    assert done["exit_code"] == 0
    assert tail(operator, execution).json()["next_offset"] == 6  # no offset: from 0


@pytest.mark.parametrize("offset", ["-3", "abc"])
def test_tail_treats_a_bad_offset_as_zero(operator, offset):
    execution = ExecutionFactory()
    ExecutionLogFactory(execution=execution, seq=0)
    body = tail(operator, execution, offset).json()
    assert len(body["chunks"]) == 1


@pytest.mark.parametrize("pk", [str(uuid.uuid4()), "not-a-uuid", "1"])
def test_tail_of_an_unknown_or_malformed_id_is_404(operator, pk):
    assert tail(operator, pk).status_code == 404


def test_tail_needs_a_staff_login(client):
    execution = ExecutionFactory()
    response = tail(client, execution)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_operate_cancel_and_retry_buttons(operator):
    queued = ExecutionFactory()
    response = operate(operator, queued, "cancel", follow=True)
    assert response.redirect_chain[-1][0] == detail(queued)
    assert "Execution cancelled." in messages_of(response)
    queued.refresh_from_db()
    assert queued.status == S.CANCELLED

    response = operate(operator, queued, "retry", follow=True)
    retry = Execution.objects.get(retry_of=queued)
    assert response.redirect_chain[-1][0] == detail(retry)
    assert (retry.trigger, retry.attempt, retry.status) == (Trigger.ADMIN, 2, S.QUEUED)
    assert "Retry queued: attempt 2." in messages_of(response)


def test_operate_that_cannot_apply_says_so(operator):
    done = finished()
    response = operate(operator, done, "cancel", follow=True)
    assert any("cannot be cancelled" in m for m in messages_of(response))
    done.refresh_from_db()
    assert done.status == S.SUCCEEDED
    queued = ExecutionFactory()
    response = operate(operator, queued, "retry", follow=True)
    assert any("only a finished one" in m for m in messages_of(response))
    assert not Execution.objects.filter(retry_of=queued).exists()


def test_operate_is_refused_to_viewers_and_to_get(operator, viewer):
    queued = ExecutionFactory()
    assert operate(viewer, queued, "cancel").status_code in (403, 404)
    assert operate(viewer, finished(), "retry").status_code in (403, 404)
    assert operator.get(f"{EXECUTIONS}{queued.pk}/operate/cancel/").status_code in (403, 404, 405)
    assert operate(operator, queued, "delete").status_code == 404
    assert operator.post(f"{EXECUTIONS}nope/operate/cancel/").status_code == 404
    queued.refresh_from_db()
    assert queued.status == S.QUEUED
    assert Execution.objects.count() == 2


def test_history_is_read_only(operator):
    execution = finished(S.FAILED, exit_code=2)
    before = Execution.objects.filter(pk=execution.pk).values().get()
    page = operator.get(detail(execution))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and 'name="exit_code"' not in html
    response = operator.post(detail(execution), {"status": "succeeded", "exit_code": "0"})
    assert response.status_code == 403
    assert Execution.objects.filter(pk=execution.pk).values().get() == before
    assert operator.get(EXECUTIONS + "add/").status_code == 403
    assert operator.post(EXECUTIONS + "add/", {"command": "x"}).status_code == 403
    assert operator.get(f"{EXECUTIONS}{execution.pk}/delete/").status_code == 403
    assert Execution.objects.count() == 1


# -- managed workers -----------------------------------------------------------------------


def test_managed_worker_changelist_and_detail(operator, viewer):
    worker = WorkerFactory(name="managed-default-aaa")
    managed = ManagedWorkerFactory(
        name="managed-default-aaa", worker=worker, concurrency=3, status="stopped"
    )
    for client in (operator, viewer):
        page = client.get(MANAGED)
        assert page.status_code == 200
        html = page.content.decode()
        assert "managed-default-aaa" in html and ">stopped<" in html
        change = client.get(f"{MANAGED}{managed.pk}/change/")
        assert change.status_code == 200
        assert 'name="concurrency"' not in change.content.decode()


@pytest.mark.parametrize("status", [ManagedWorkerStatus.STOPPED, ManagedWorkerStatus.FAILED])
def test_stop_of_a_worker_that_is_not_running_says_so_and_changes_nothing(operator, status):
    managed = ManagedWorkerFactory(status=status, stopped_at=clock.now())
    before = ManagedWorker.objects.filter(pk=managed.pk).values().get()
    response = action(operator, MANAGED, "stop_selected", [managed])
    messages = messages_of(response)
    assert f"{managed.name}: already {status}." in messages, messages
    assert not any("1 worker(s) stopped" in m for m in messages)
    assert ManagedWorker.objects.filter(pk=managed.pk).values().get() == before


def test_a_dead_process_is_failed_by_the_maintenance_task_not_by_reading(operator):
    dead = subprocess.Popen(["true"])
    dead.wait()
    managed = ManagedWorkerFactory(
        status=ManagedWorkerStatus.RUNNING, pid=dead.pid, host=socket.gethostname()
    )
    assert ">running<" in operator.get(MANAGED).content.decode()
    managed.refresh_from_db()
    assert managed.status == ManagedWorkerStatus.RUNNING  # a GET writes nothing

    assert "1 managed worker(s) found dead" in maintain_workers()
    managed.refresh_from_db()
    assert managed.status == ManagedWorkerStatus.FAILED
    assert "exited" in managed.failure_reason
    assert ">failed<" in operator.get(MANAGED).content.decode()


def test_viewer_cannot_start_or_stop_managed_workers(viewer):
    managed = ManagedWorkerFactory(status=ManagedWorkerStatus.STOPPED)
    assert viewer.get(MANAGED + "add/").status_code == 403
    assert viewer.post(MANAGED + "add/", {"type": "default", "concurrency": "1"}).status_code == 403
    assert "stop_selected" not in viewer.get(MANAGED).content.decode()
    action(viewer, MANAGED, "stop_selected", [managed])
    assert ManagedWorker.objects.count() == 1


def test_managed_workers_are_not_edited_by_hand(operator):
    managed = ManagedWorkerFactory(concurrency=2)
    response = operator.post(f"{MANAGED}{managed.pk}/change/", {"concurrency": "9"})
    assert response.status_code == 403
    managed.refresh_from_db()
    assert managed.concurrency == 2


def test_start_form_validates_before_starting_anything(operator):
    page = operator.get(MANAGED + "add/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="type"' in html and 'name="concurrency"' in html
    data = admin_form_data(page, type="not a type!", concurrency="0")
    response = operator.post(MANAGED + "add/", data)
    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) >= {"type", "concurrency"}
    assert not ManagedWorker.objects.exists()


class FakeProvider:
    """Stands in for the local provider: the 'agent' registers at once, with the
    credential the control plane made for it."""

    name = "local"

    def __init__(self, *, fail=False):
        self.fail, self.stopped = fail, []

    def start(self, managed, *, credential):
        if self.fail:
            raise ProviderError("no room on this host")
        held = worker_credential_find(credential, now=clock.now())
        agent_register(credential=held, capacity=managed.concurrency)
        return Launch(pid=4242, host="fake-host")

    def is_alive(self, managed):
        return managed.pk not in self.stopped

    def exit_reason(self, managed):
        return "stopped"

    def stop(self, managed, *, grace_seconds):
        self.stopped.append(managed.pk)


def test_start_and_stop_go_through_the_services_and_the_provider(
    transactional_db, operator, monkeypatch
):
    # transactional_db: a start refuses to run inside a transaction, and the admin's
    # runs outside its own.
    provider = FakeProvider()
    monkeypatch.setattr(managed_module, "get_provider", lambda name: provider)
    page = operator.get(MANAGED + "add/")
    data = admin_form_data(page, type="gpu", concurrency="3", labels='{"zone": "a"}')
    response = operator.post(MANAGED + "add/", data, follow=True)
    managed = ManagedWorker.objects.get()
    assert (managed.status, managed.type, managed.concurrency, managed.labels) == (
        ManagedWorkerStatus.RUNNING,
        "gpu",
        3,
        {"zone": "a"},
    )
    assert (managed.pid, managed.host, managed.worker.name) == (4242, "fake-host", managed.name)
    assert f"Worker {managed.name} started (pid 4242)." in messages_of(response)
    assert ">running<" in operator.get(MANAGED).content.decode()  # still alive

    response = action(operator, MANAGED, "stop_selected", [managed])
    assert "1 worker(s) stopped." in messages_of(response)
    assert provider.stopped == [managed.pk]
    managed.refresh_from_db()
    assert managed.status == ManagedWorkerStatus.STOPPED and managed.stopped_at
    assert managed.worker.status == WorkerStatus.OFFLINE


def test_a_start_that_fails_says_why_and_not_that_it_succeeded(
    transactional_db, operator, monkeypatch
):
    monkeypatch.setattr(managed_module, "get_provider", lambda name: FakeProvider(fail=True))
    page = operator.get(MANAGED + "add/")
    response = operator.post(MANAGED + "add/", admin_form_data(page, type="gpu"), follow=True)
    assert response.status_code == 200
    messages = messages_of(response)
    assert "Could not start a worker: no room on this host" in messages
    assert not any("successfully" in m for m in messages), messages
    managed = ManagedWorker.objects.get()
    assert (managed.status, managed.failure_reason) == (
        ManagedWorkerStatus.FAILED,
        "no room on this host",
    )


@pytest.fixture
def live_workermanager(child_env, settings):
    """A real worker manager for the managed agents to talk to (they run in HTTP mode)."""
    proc, base = start_service(child_env, "workermanager", args=("--threads", "8"))
    settings.HODEI_WORKERMANAGER_URL = base
    settings.HODEI_HEARTBEAT_SECONDS, settings.HODEI_POLL_SECONDS = 0.5, 0.2
    yield base
    stop(proc)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_operator_starts_and_stops_a_real_managed_worker(live_workermanager):
    operator = logged_in(role_user(OPERATORS))
    page = operator.get(MANAGED + "add/")
    data = admin_form_data(page, type="admin-test", concurrency="2")
    response = operator.post(MANAGED + "add/", data, follow=True)
    managed = ManagedWorker.objects.get()
    try:
        assert response.status_code == 200
        assert any("started" in m for m in messages_of(response)), messages_of(response)
        assert managed.status == ManagedWorkerStatus.RUNNING, managed.failure_reason
        assert (managed.type, managed.concurrency, managed.provider) == ("admin-test", 2, "local")
        worker = Worker.objects.get(pk=managed.worker_id)
        assert (worker.status, worker.capacity) == (WorkerStatus.ONLINE, 2)
        assert ">running<" in operator.get(MANAGED).content.decode()
    finally:
        stopped = action(operator, MANAGED, "stop_selected", [managed])
    assert "1 worker(s) stopped." in messages_of(stopped)
    managed.refresh_from_db()
    assert managed.status == ManagedWorkerStatus.STOPPED
    assert Worker.objects.get(pk=managed.worker_id).status == WorkerStatus.OFFLINE
    from workermanager.providers.local import _pid_running

    assert not _pid_running(managed.pid, managed.name)


def test_tail_carries_everything_the_page_updates_live(operator):
    worker = WorkerFactory(name="agent-live")
    execution = ExecutionFactory()
    state = tail(operator, execution).json()
    assert (state["can_cancel"], state["can_retry"]) == (True, False)
    assert state["worker_html"] == "–" and state["started_html"] == "–"

    start(execution, worker=worker, now=clock.now())
    ExecutionLogFactory(execution=execution, seq=0, message="hi\n")
    state = tail(operator, execution).json()
    assert "agent-live" in state["worker_html"]
    assert "UTC" in state["started_html"] and state["finished_html"] == "–"
    assert ">running<" in state["status_html"]
    assert state["chunks"][0]["at"].endswith("+00:00")

    execution.settle(status=S.SUCCEEDED, exit_code=0, now=clock.now())
    state = tail(operator, execution).json()
    assert (state["can_cancel"], state["can_retry"], state["complete"]) == (False, True, True)
    assert "UTC" in state["finished_html"] and state["exit_code"] == 0


def test_the_raw_log_downloads_whole_for_viewers_too(viewer):
    execution = finished()
    for seq in range(3):
        ExecutionLogFactory(execution=execution, seq=seq, message=f"line {seq}\n")
    response = viewer.get(f"{EXECUTIONS}{execution.pk}/log.txt")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"".join(response.streaming_content) == b"line 0\nline 1\nline 2\n"


def test_reading_output_in_the_admin_needs_the_log_permission():
    from django.contrib.auth.models import Permission

    execution = finished()
    ExecutionLogFactory(execution=execution, seq=0, message="the secret plan\n")
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_execution"))
    client = logged_in(user)
    page = client.get(detail(execution)).content.decode()
    assert "the secret plan" not in page and "hodei-log-forbidden" in page
    assert tail(client, execution).json()["chunks"] == []
    assert client.get(f"{EXECUTIONS}{execution.pk}/log.txt").status_code == 404
