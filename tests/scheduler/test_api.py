"""Contract tests of the scheduler API: schedules and the worker registry."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hodei.lib import clock
from scheduler.models import Schedule
from tests.factories import JobFactory, ScheduleFactory, WorkerFactory
from workermanager.models import Worker

pytestmark = pytest.mark.django_db


def assert_field_error(response, *fields: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid"
    for field in fields:
        assert field in body["fields"], body


def parse_time(value: str) -> datetime:
    assert value.endswith("Z") or value.endswith("+00:00"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def links(response) -> dict[str, str]:
    out = {}
    for part in response.headers.get("Link", "").split(","):
        if part.strip():
            url, rel = part.split(";", 1)
            out[rel.strip().removeprefix("rel=").strip('"')] = url.strip().strip("<>")
    return out


# -- schedules ---------------------------------------------------------------------


def test_it_schedules_a_job_with_cron(sched):
    job = JobFactory()
    before = clock.now()
    response = sched.post(
        "/api/v1/schedule", {"job_id": str(job.id), "cron": "*/5 * * * *"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert uuid.UUID(body["id"])
    assert body["job_id"] == str(job.id)
    assert body["cron"] == "*/5 * * * *"
    assert body["timezone"] == "UTC"
    assert body["schedule_time"] is None
    assert body["status"] == "scheduled"
    assert body["enabled"] is True
    assert body["overlap_policy"] == "forbid"
    assert body["misfire_policy"] == "run_once"
    assert parse_time(body["scheduled_at"]) >= before - timedelta(seconds=1)

    upcoming = [parse_time(t) for t in body["upcoming"]]
    assert len(upcoming) == 5
    assert all(t.minute % 5 == 0 and t.second == 0 for t in upcoming)
    assert all(b - a == timedelta(minutes=5) for a, b in zip(upcoming, upcoming[1:], strict=False))
    assert upcoming[0] > before
    assert parse_time(body["next_run_at"]) == upcoming[0]
    assert Schedule.objects.get(pk=body["id"]).job_id == job.id


def test_it_evaluates_cron_in_the_schedule_timezone(sched):
    job = JobFactory()
    response = sched.post(
        "/api/v1/schedule",
        {"job_id": str(job.id), "cron": "30 9 * * *", "timezone": "Asia/Kolkata"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["timezone"] == "Asia/Kolkata"
    # 09:30 in India (UTC+05:30, no DST) is 04:00 UTC.
    assert all(t.endswith("Z") for t in body["upcoming"])
    for value in body["upcoming"]:
        t = parse_time(value)
        assert (t.hour, t.minute) == (4, 0)


def test_it_schedules_a_job_once(sched):
    job = JobFactory()
    when = (clock.now() + timedelta(hours=1)).replace(microsecond=0)
    response = sched.post(
        "/api/v1/schedule",
        {"job_id": str(job.id), "schedule_time": when.isoformat()},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["cron"] == ""
    assert parse_time(body["schedule_time"]) == when
    assert parse_time(body["next_run_at"]) == when
    assert [parse_time(t) for t in body["upcoming"]] == [when]
    assert body["status"] == "scheduled"


def test_it_takes_the_policies_and_a_disabled_flag(sched):
    job = JobFactory()
    response = sched.post(
        "/api/v1/schedule",
        {
            "job_id": str(job.id),
            "cron": "@hourly",
            "name": "hourly",
            "overlap_policy": "allow",
            "misfire_policy": "skip",
            "enabled": False,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "hourly"
    assert body["overlap_policy"] == "allow"
    assert body["misfire_policy"] == "skip"
    assert body["enabled"] is False
    assert body["status"] == "paused"
    assert body["upcoming"] == []
    assert body["next_run_at"] is None


def test_it_accepts_a_seconds_field(sched):
    job = JobFactory()
    response = sched.post(
        "/api/v1/schedule", {"job_id": str(job.id), "cron": "*/10 * * * * *"}, format="json"
    )
    assert response.status_code == 201, response.content
    upcoming = [parse_time(t) for t in response.json()["upcoming"]]
    assert all(b - a == timedelta(seconds=10) for a, b in zip(upcoming, upcoming[1:], strict=False))


@pytest.mark.parametrize(
    "payload, fields",
    [
        ({}, ["cron", "schedule_time"]),
        ({"cron": ""}, ["cron", "schedule_time"]),
        ({"cron": "* * * * *", "schedule_time": "2030-01-01T00:00:00Z"}, ["cron", "schedule_time"]),
        ({"cron": "not a cron"}, ["cron"]),
        ({"cron": "61 * * * *"}, ["cron"]),
        ({"cron": "* * * *"}, ["cron"]),
        ({"cron": "* * * * * * *"}, ["cron"]),
        ({"cron": "@reboot"}, ["cron"]),
        ({"cron": "0 0 31 2 *"}, ["cron"]),
        ({"cron": "x" * 201}, ["cron"]),
        ({"cron": None}, ["cron"]),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, ["timezone"]),
        ({"cron": "* * * * *", "timezone": "../../etc/passwd"}, ["timezone"]),
        ({"cron": "* * * * *", "timezone": ""}, ["timezone"]),
        ({"schedule_time": "2026-13-45T00:00:00Z"}, ["schedule_time"]),
        ({"schedule_time": "99999-01-01T00:00:00Z"}, ["schedule_time"]),
        ({"schedule_time": "1969-12-31T23:59:59Z"}, ["schedule_time"]),
        ({"schedule_time": "tomorrow"}, ["schedule_time"]),
        ({"cron": "* * * * *", "overlap_policy": "sometimes"}, ["overlap_policy"]),
        ({"cron": "* * * * *", "misfire_policy": "panic"}, ["misfire_policy"]),
        ({"cron": "* * * * *", "enabled": "maybe"}, ["enabled"]),
    ],
)
def test_it_rejects_an_invalid_schedule(sched, payload, fields):
    job = JobFactory()
    response = sched.post("/api/v1/schedule", {"job_id": str(job.id), **payload}, format="json")
    assert_field_error(response, *fields)
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("job_id", [None, "nope", str(uuid.uuid4()), 7])
def test_a_schedule_needs_an_existing_job(sched, job_id):
    response = sched.post(
        "/api/v1/schedule", {"job_id": job_id, "cron": "* * * * *"}, format="json"
    )
    assert_field_error(response, "job_id")


def test_a_schedule_without_job_id_is_rejected(sched):
    assert_field_error(
        sched.post("/api/v1/schedule", {"cron": "* * * * *"}, format="json"), "job_id"
    )


def test_it_lists_schedules(sched):
    schedules = ScheduleFactory.create_batch(3)
    response = sched.get("/api/v1/scheduled")
    assert response.status_code == 200
    body = response.json()
    assert [s["id"] for s in body] == [str(s.id) for s in reversed(schedules)]
    assert body[0]["job_id"] == str(schedules[-1].job_id)
    assert len(body[0]["upcoming"]) == 5


def test_it_paginates_schedules(sched):
    schedules = ScheduleFactory.create_batch(3)
    first = sched.get("/api/v1/scheduled?limit=2")
    second = sched.get(links(first)["next"])
    ids = [s["id"] for s in first.json() + second.json()]
    assert ids == [str(s.id) for s in reversed(schedules)]


def test_it_filters_schedules(sched):
    job = JobFactory()
    mine = ScheduleFactory(job=job)
    other = ScheduleFactory(status="paused")
    assert [s["id"] for s in sched.get(f"/api/v1/scheduled?job_id={job.id}").json()] == [
        str(mine.id)
    ]
    assert [s["id"] for s in sched.get("/api/v1/scheduled?status=paused").json()] == [str(other.id)]
    assert [s["id"] for s in sched.get("/api/v1/scheduled?enabled=true").json()] == [str(mine.id)]


@pytest.mark.parametrize(
    "query, field", [("job_id=nope", "job_id"), ("status=bogus", "status"), ("limit=0", "limit")]
)
def test_it_rejects_bad_schedule_filters(sched, query, field):
    assert_field_error(sched.get(f"/api/v1/scheduled?{query}"), field)


def test_it_retrieves_a_schedule(sched):
    schedule = ScheduleFactory(timezone="Europe/Madrid")
    response = sched.get(f"/api/v1/scheduled/{schedule.id}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(schedule.id)
    assert body["cron"] == schedule.cron
    assert body["timezone"] == "Europe/Madrid"
    assert len(body["upcoming"]) == 5


@pytest.mark.parametrize("pk", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_schedule_is_404(sched, pk):
    response = sched.get(f"/api/v1/scheduled/{pk}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_listing_schedules_uses_a_constant_number_of_queries(sched, django_assert_max_num_queries):
    sched.get("/api/v1/scheduled")
    ScheduleFactory.create_batch(50)
    with django_assert_max_num_queries(2):
        response = sched.get("/api/v1/scheduled")
    assert len(response.json()) == 50


# -- workers -----------------------------------------------------------------------


def test_it_registers_a_worker(sched):
    before = clock.now()
    response = sched.post("/api/v1/workers", {"type": "rust"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert uuid.UUID(body["id"])
    assert body["type"] == "rust"
    assert body["status"] == "online"
    assert parse_time(body["registered_at"]) >= before - timedelta(seconds=1)
    assert body["name"].startswith("rust-")
    assert body["capacity"] == 1
    assert body["last_heartbeat"] is not None
    assert Worker.objects.get(pk=body["id"]).type == "rust"


def test_it_registers_a_worker_with_details(sched):
    response = sched.post(
        "/api/v1/workers",
        {
            "type": "gpu",
            "name": "gpu-1",
            "labels": {"zone": "a"},
            "capacity": 4,
            "hostname": "box",
            "version": "1.2.3",
            "pid": 4242,
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["labels"], body["capacity"]) == ("gpu-1", {"zone": "a"}, 4)
    assert (body["hostname"], body["version"], body["pid"]) == ("box", "1.2.3", 4242)


def test_re_registering_a_name_keeps_the_worker(sched):
    first = sched.post("/api/v1/workers", {"type": "rust", "name": "agent-1"}, format="json")
    assert first.status_code == 201
    Worker.objects.filter(pk=first.json()["id"]).update(status="offline")
    again = sched.post(
        "/api/v1/workers", {"type": "rust", "name": "agent-1", "capacity": 2}, format="json"
    )
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "online"
    assert again.json()["capacity"] == 2
    assert Worker.objects.count() == 1


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "type"),
        ({"type": ""}, "type"),
        ({"type": "has space"}, "type"),
        ({"type": "x" * 65}, "type"),
        ({"type": "rust", "capacity": 0}, "capacity"),
        ({"type": "rust", "capacity": 1025}, "capacity"),
        ({"type": "rust", "capacity": "many"}, "capacity"),
        ({"type": "rust", "pid": -1}, "pid"),
        ({"type": "rust", "labels": "a=b"}, "labels"),
        ({"type": "rust", "labels": {"a": 1}}, "labels"),
        ({"type": "rust", "name": "n" * 201}, "name"),
    ],
)
def test_it_rejects_an_invalid_worker(sched, payload, field):
    assert_field_error(sched.post("/api/v1/workers", payload, format="json"), field)
    assert not Worker.objects.exists()


def test_it_lists_workers(sched):
    workers = WorkerFactory.create_batch(3)
    response = sched.get("/api/v1/workers")
    assert response.status_code == 200
    assert [w["id"] for w in response.json()] == [str(w.id) for w in reversed(workers)]


def test_it_filters_workers(sched):
    rust = WorkerFactory(type="rust")
    offline = WorkerFactory(type="python", status="offline")

    def ids(query):
        response = sched.get(f"/api/v1/workers?{query}")
        assert response.status_code == 200
        return [w["id"] for w in response.json()]

    assert ids("type=rust") == [str(rust.id)]
    assert ids("status=offline") == [str(offline.id)]
    assert ids("status=online") == [str(rust.id)]
    assert ids("status=online&type=python") == []


@pytest.mark.parametrize(
    "query, field", [("status=sleeping", "status"), ("status=%00", "status"), ("type=%00", "type")]
)
def test_it_rejects_bad_worker_filters(sched, query, field):
    assert_field_error(sched.get(f"/api/v1/workers?{query}"), field)


def test_it_retrieves_a_worker(sched):
    worker = WorkerFactory(labels={"a": "b"})
    body = sched.get(f"/api/v1/workers/{worker.id}").json()
    assert body["id"] == str(worker.id)
    assert body["name"] == worker.name
    assert body["labels"] == {"a": "b"}
    assert body["status"] == "online"


def test_a_heartbeat_updates_last_heartbeat(sched):
    worker = WorkerFactory(last_heartbeat_at=clock.now() - timedelta(minutes=5))
    before = clock.now()
    response = sched.post(f"/api/v1/workers/{worker.id}/heartbeat")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "online"
    assert parse_time(body["last_heartbeat"]) >= before
    worker.refresh_from_db()
    assert worker.last_heartbeat_at >= before


def test_a_heartbeat_brings_an_offline_worker_back_online(sched):
    worker = WorkerFactory(status="offline", stopped_at=datetime(2026, 1, 1, tzinfo=UTC))
    response = sched.post(f"/api/v1/workers/{worker.id}/heartbeat")
    assert response.status_code == 200
    assert response.json()["status"] == "online"
    assert response.json()["stopped_at"] is None
    worker.refresh_from_db()
    assert worker.status == "online"


def test_a_heartbeat_keeps_a_draining_worker_draining(sched):
    worker = WorkerFactory(status="draining")
    assert sched.post(f"/api/v1/workers/{worker.id}/heartbeat").json()["status"] == "draining"


@pytest.mark.parametrize("pk", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_worker_is_404(sched, pk):
    for response in (
        sched.get(f"/api/v1/workers/{pk}"),
        sched.post(f"/api/v1/workers/{pk}/heartbeat"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


def test_listing_workers_uses_a_constant_number_of_queries(sched, django_assert_max_num_queries):
    sched.get("/api/v1/workers")
    WorkerFactory.create_batch(50)
    with django_assert_max_num_queries(2):
        response = sched.get("/api/v1/workers")
    assert len(response.json()) == 50
