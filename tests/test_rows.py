"""hodei.lib.rows: the hot paths' own statements store and read rows exactly as the ORM
does (on PostgreSQL prepared on the server, on SQLite through Django's cursor)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from events.models import Event
from hodei.lib import clock, rows
from tests.factories import JobFactory, WorkerFactory
from workermanager.models import Execution

pytestmark = pytest.mark.django_db


def every_column(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_insert_stores_every_column_as_save_does():
    now = clock.now()
    fields = dict(
        job=JobFactory(),
        command="echo 'quotes' \"and\" $VARS \\ ünïcode",
        type="python",
        worker_type="gpu",
        env={"A": "1", "NESTED": "x=y"},
        timeout_seconds=30,
        status="running",
        worker=WorkerFactory(),
        created_at=now,
        available_at=now,
        started_at=now,
        deadline_at=now + timedelta(seconds=30),
        cpu_limit=0.5,
        memory_limit_mb=256,
        outputs={"OUT": "v"},
        priority=-3,
        trace_parent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    by_orm = Execution(**fields)
    by_orm.save(force_insert=True)
    by_insert = Execution(**fields)
    rows.insert(by_insert)

    assert by_insert._state.adding is False
    stored = [every_column(Execution.objects.get(pk=e.pk)) for e in (by_orm, by_insert)]
    for one in stored:
        one.pop("id")
    assert stored[0] == stored[1]
    assert stored[1]["env"] == {"A": "1", "NESTED": "x=y"}
    assert model_to_dict(Execution.objects.get(pk=by_insert.pk))["command"] == fields["command"]


def test_insert_converts_values_of_other_types_as_save_does():
    # Values of the field's own type go as they are; any other (a string for a number or
    # a time, an int for a flag) through the field's conversions, as save() sends them.
    now = clock.now()
    fields = dict(
        command="true",
        timeout_seconds="30",
        priority="7",
        log_truncated=1,
        cpu_limit=1,
        deadline_at=None,
        created_at=now,
        available_at=now,
        started_at="2030-01-02T03:04:05+00:00",
    )
    statement, values = rows.insert_statement(Execution(**fields))
    by_orm = Execution(**fields)
    expected = [
        f.get_db_prep_save(f.pre_save(by_orm, True), connection)
        for f in Execution._meta.concrete_fields
    ]
    values = {f.name: v for f, v in zip(Execution._meta.concrete_fields, values, strict=True)}
    expected = {f.name: v for f, v in zip(Execution._meta.concrete_fields, expected, strict=True)}
    for name in ("id", "env", "outputs"):  # a new id each; JSON in adapters, compared below
        values.pop(name), expected.pop(name)
    assert values == expected
    assert values["timeout_seconds"] == 30 and values["priority"] == 7
    assert values["log_truncated"] is True and values["cpu_limit"] == 1.0

    rows.insert(stored := Execution(**fields))
    again = Execution.objects.get(pk=stored.pk)
    assert (again.timeout_seconds, again.priority, again.deadline_at) == (30, 7, None)
    assert again.started_at.isoformat() == "2030-01-02T03:04:05+00:00"


def test_insert_refuses_a_model_whose_columns_the_database_fills_in():
    event = Event(type="execution.queued", subject="x", subject_ids={}, payload={})
    with pytest.raises(ValueError, match="fills in"):
        rows.insert(event)
    assert Event.objects.count() == 0


def test_fetch_all_rows_come_back_as_instances_converted_as_by_the_orm():
    execution = Execution(command="true", env={"K": "v"}, created_at=clock.now())
    execution.available_at = execution.created_at
    rows.insert(execution)
    table = Execution._meta.db_table
    found = rows.fetch_all(
        f"SELECT {rows.select_list(Execution)} FROM {table} WHERE id = %s",
        [Execution._meta.pk.get_db_prep_value(execution.pk, connection)],
    )
    [again] = rows.from_rows(Execution, found)
    assert every_column(again) == every_column(Execution.objects.get(pk=execution.pk))


def test_its_statements_are_seen_where_djangos_are():
    with CaptureQueriesContext(connection) as seen:
        rows.fetch_all("SELECT 1 WHERE 1 = %s", [1])
    assert len(seen) == 1 and "SELECT 1 WHERE 1 = " in seen[0]["sql"]


def test_fetch_joined_gives_what_select_related_gives_in_one_query():
    job = JobFactory()
    Execution.objects.create(job=job, command="true", created_at=clock.now())
    Execution.objects.create(command="no job", created_at=clock.now())
    with CaptureQueriesContext(connection) as seen:
        [found] = rows.fetch_joined(Execution, "job", "r.name = %s", [job.name])
        assert found.job.name == job.name  # loaded: no query of its own
    assert len(seen) == 1
    orm = Execution.objects.select_related("job").get(job=job)
    assert every_column(found) == every_column(orm)
    assert every_column(found.job) == every_column(orm.job)
    assert rows.fetch_joined(Execution, "job", "r.name = %s", ["nobody"]) == []
