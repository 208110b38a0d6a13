"""hodei.lib.pipeline: statements of a hot path in one round trip on PostgreSQL (libpq's
pipeline mode), their transaction and their errors as without it; nothing on SQLite."""

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from events.models import Event
from events.services import event_new, events_emit
from hodei.lib.pipeline import pipelined
from workermanager import services
from workermanager.choices import ExecutionStatus
from workermanager.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="pipeline mode is PostgreSQL's"
)


def an_event(n: int) -> Event:
    return event_new("execution.queued", subject=("execution", n), ids={}, payload={"n": n})


def committed_events() -> int:
    """Counted over a connection of its own: what others see, so what was committed."""
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    with psycopg.connect(**params) as other:
        return other.execute(f"SELECT count(*) FROM {Event._meta.db_table}").fetchone()[0]


@on_postgresql
def test_statements_inside_commit_together_and_a_query_still_gets_its_rows():
    with transaction.atomic(), pipelined() as pipe:
        assert connection.connection._pipeline is not None  # really pipelined
        events_emit([an_event(1), an_event(2)])
        # A query syncs the pipeline: it sees what was sent before it.
        assert Event.objects.count() == 2
        events_emit([an_event(3)])
        assert committed_events() == 0  # not yet: COMMIT is sent at the atomic's end
    assert pipe._pipeline is None and connection.connection._pipeline is None
    assert committed_events() == 3


@on_postgresql
def test_an_error_inside_is_djangos_and_rolls_back_the_whole_transaction():
    with pytest.raises(IntegrityError), transaction.atomic(), pipelined():
        events_emit([an_event(1)])
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {Event._meta.db_table} (type) VALUES ('x')")  # NOT NULL
        events_emit([an_event(2)])
    assert committed_events() == 0
    # The connection is usable again, out of pipeline mode.
    assert connection.connection._pipeline is None
    assert Event.objects.count() == 0


@on_postgresql
def test_leave_ends_the_pipeline_so_row_counts_are_known_again():
    events_emit([an_event(1), an_event(2)])
    with transaction.atomic(), pipelined() as pipe:
        events_emit([an_event(3)])
        pipe.leave()
        assert connection.connection._pipeline is None
        assert (
            Event.objects.filter(subject__in=["execution:1", "execution:3"]).update(
                subject="execution:0"
            )
            == 2
        )
    assert Event.objects.filter(subject="execution:0").count() == 2


def test_disabled_outside_a_transaction_or_on_sqlite_it_changes_nothing():
    with transaction.atomic(), pipelined(enabled=False) as pipe:
        events_emit([an_event(1)])
        assert pipe._pipeline is None
    with pipelined() as pipe:  # autocommit: each statement is its own transaction
        events_emit([an_event(2)])
        assert pipe._pipeline is None
    assert Event.objects.count() == 2
    if connection.vendor != "postgresql":
        assert pipelined().enabled is False


def test_a_plain_enqueue_and_a_claim_are_whole_with_their_events():
    """The API's enqueue and an agent's claim, pipelined on PostgreSQL: each change is
    stored with its event, as on SQLite."""
    from tests.factories import WorkerFactory

    execution = services.execution_enqueue(command="echo hi", type="bash")
    worker = WorkerFactory()
    [claimed] = services.executions_claim(worker=worker, limit=4, only_online=True)

    assert claimed.pk == execution.pk
    stored = Execution.objects.get(pk=execution.pk)
    assert (stored.status, stored.worker_id) == (ExecutionStatus.RUNNING, worker.pk)
    kinds = list(
        Event.objects.filter(subject=f"execution:{execution.pk}")
        .order_by("id")
        .values_list("type", flat=True)
    )
    assert kinds == ["execution.queued", "execution.started"]


def test_requests_one_after_another_each_enqueue_through_the_pipeline(wm):
    """POST /api/v1/execute again and again on one connection (the statements prepared
    by the earlier requests in place), as under gunicorn."""
    ids = []
    for _ in range(4):
        response = wm.post("/api/v1/execute", {"command": "true"}, format="json")
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    assert Execution.objects.filter(pk__in=ids, status=ExecutionStatus.QUEUED).count() == 4
    assert Event.objects.filter(type="execution.queued").count() == 4
