"""The admin of schedules and workers, driven through Django's test client."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import Schedule as EngineSchedule

from accounts.roles import OPERATORS, VIEWERS
from hodei.lib import clock
from scheduler import services
from scheduler.choices import FireOutcome, OverlapPolicy, ScheduleStatus
from scheduler.cron import next_fire_times
from scheduler.models import Schedule, ScheduleFire
from tests.conftest import client_for
from tests.factories import (
    ExecutionFactory,
    JobFactory,
    ScheduleFactory,
    ScheduleFireFactory,
    WorkerFactory,
    admin_form_data,
    logged_in,
    messages_of,
    role_user,
)
from workermanager.choices import ExecutionStatus, Trigger, WorkerStatus
from workermanager.models import Execution, Worker

pytestmark = pytest.mark.django_db

SCHEDULES = "/admin/scheduler/schedule/"
WORKERS = "/admin/workermanager/worker/"
PREVIEW = SCHEDULES + "preview/"
DAILY = "0 3 * * *"  # stable across the few milliseconds of a test


@pytest.fixture
def operator_user(db):
    return role_user(OPERATORS)


@pytest.fixture
def operator(operator_user):
    return logged_in(operator_user)


@pytest.fixture
def viewer(db):
    return logged_in(role_user(VIEWERS))


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def action(client, url, name, objects):
    data = {"action": name, "_selected_action": [str(o.pk) for o in objects]}
    return client.post(url, data, follow=True)


def engine_row(schedule):
    return EngineSchedule.objects.filter(name=f"hodei:{schedule.pk}").first()


def upcoming_shown(html: str) -> list[str]:
    start = html.index('class="form-row field-upcoming')
    section = html[start : html.index("</div>\n\n", start)]
    return [part.split("</div>")[0] for part in section.split('<div class="hodei-upcoming">')[1:]]


# -- the schedule form ---------------------------------------------------------------


def add_form(client, **values):
    page = client.get(SCHEDULES + "add/")
    assert page.status_code == 200
    return admin_form_data(page, **values)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "every monday"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": DAILY, "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"cron": DAILY, "timezone": "europe/madrid"}, "timezone"),
    ],
)
def test_a_bad_cron_or_timezone_is_a_form_error_and_creates_nothing(operator, values, field):
    job = JobFactory()
    data = add_form(operator, job=str(job.pk), **values)
    response = operator.post(SCHEDULES + "add/", data)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not Schedule.objects.exists()
    assert not EngineSchedule.objects.filter(name__startswith="hodei:").exists()


def test_cron_and_schedule_time_together_is_a_form_error(operator):
    job = JobFactory()
    data = add_form(
        operator,
        job=str(job.pk),
        cron=DAILY,
        schedule_time_0="2030-01-01",
        schedule_time_1="10:00:00",
    )
    response = operator.post(SCHEDULES + "add/", data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "exactly one" in str(errors["cron"]) and "exactly one" in str(errors["schedule_time"])
    assert not Schedule.objects.exists()


def test_a_valid_schedule_is_created_with_its_engine_row(operator):
    job = JobFactory()
    data = add_form(operator, job=str(job.pk), cron="0  3 * * 1-5", timezone="Europe/Madrid")
    before = clock.now()
    response = operator.post(SCHEDULES + "add/", data, follow=True)
    assert response.status_code == 200
    schedule = Schedule.objects.get()
    assert schedule.cron == "0 3 * * 1-5"  # normalised
    assert (schedule.timezone, schedule.status, schedule.enabled) == (
        "Europe/Madrid",
        ScheduleStatus.SCHEDULED,
        True,
    )
    expected = next_fire_times("0 3 * * 1-5", "Europe/Madrid", after=before, count=1)[0]
    assert schedule.next_run_at == expected
    row = engine_row(schedule)
    assert row is not None
    assert row.func == services.ENGINE_FUNC
    assert row.next_run == schedule.next_run_at


def test_a_paused_new_schedule_has_no_engine_row(operator):
    job = JobFactory()
    data = add_form(operator, job=str(job.pk), cron=DAILY)
    data.pop("enabled", None)
    operator.post(SCHEDULES + "add/", data)
    schedule = Schedule.objects.get()
    assert (schedule.enabled, schedule.status, schedule.next_run_at) == (
        False,
        ScheduleStatus.PAUSED,
        None,
    )
    assert engine_row(schedule) is None


def test_the_change_page_shows_the_next_five_fire_times(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY, timezone="Asia/Tokyo")
    html = operator.get(change_url(schedule)).content.decode()
    expected = services.schedule_upcoming(schedule)
    assert len(expected) == 5
    assert upcoming_shown(html) == [t.isoformat() for t in expected]
    assert 'id="hodei-preview"' in html and "schedule-preview.js" in html


def test_the_add_page_has_the_live_preview(operator):
    html = operator.get(SCHEDULES + "add/").content.decode()
    assert f'data-url="{PREVIEW}"' in html
    assert "hodei/schedule-preview.js" in html


def test_preview_returns_the_next_five_times(operator, viewer):
    before = clock.now()
    response = operator.get(PREVIEW, {"cron": "*/10 * * * *", "timezone": "Europe/Madrid"})
    assert response.status_code == 200
    times = response.json()["upcoming"]
    assert len(times) == 5
    expected = next_fire_times("*/10 * * * *", "Europe/Madrid", after=before, count=6)
    assert times in ([t.isoformat() for t in expected[:5]], [t.isoformat() for t in expected[1:]])
    assert viewer.get(PREVIEW, {"cron": DAILY}).status_code == 200  # read-only help


@pytest.mark.parametrize(
    "params",
    [{"cron": "61 * * * *"}, {"cron": ""}, {"cron": DAILY, "timezone": "Nowhere/Land"}],
)
def test_preview_of_a_bad_cron_is_400_with_the_error(operator, params):
    response = operator.get(PREVIEW, params)
    assert response.status_code == 400
    assert response.json()["error"]


def test_preview_needs_a_staff_login(client):
    response = client.get(PREVIEW, {"cron": DAILY})
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_editing_the_cron_recomputes_next_run_and_the_engine_row(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY)
    page = operator.get(change_url(schedule))
    before = clock.now()
    response = operator.post(change_url(schedule), admin_form_data(page, cron="30 4 * * *"))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.cron == "30 4 * * *"
    assert schedule.next_run_at == next_fire_times("30 4 * * *", "UTC", after=before, count=1)[0]
    assert engine_row(schedule).next_run == schedule.next_run_at


def test_editing_the_timezone_recomputes_next_run(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY)
    page = operator.get(change_url(schedule))
    before = clock.now()
    operator.post(change_url(schedule), admin_form_data(page, timezone="America/New_York"))
    schedule.refresh_from_db()
    expected = next_fire_times(DAILY, "America/New_York", after=before, count=1)[0]
    assert schedule.next_run_at == expected
    assert engine_row(schedule).next_run == expected


def test_a_bad_cron_on_edit_changes_nothing(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY)
    page = operator.get(change_url(schedule))
    response = operator.post(change_url(schedule), admin_form_data(page, cron="99 * * * *"))
    assert response.status_code == 200
    assert "cron" in response.context["adminform"].form.errors
    schedule.refresh_from_db()
    assert schedule.cron == DAILY


def test_renaming_a_completed_one_off_schedule_does_not_run_it_again(operator):
    past = clock.now() - timedelta(hours=1)
    schedule = ScheduleFactory(
        cron="",
        schedule_time=past,
        status=ScheduleStatus.COMPLETED,
        last_run_at=past,
        next_run_at=None,
    )
    page = operator.get(change_url(schedule))
    response = operator.post(change_url(schedule), admin_form_data(page, name="renamed"))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.name == "renamed"
    assert schedule.status == ScheduleStatus.COMPLETED
    assert schedule.last_run_at == past
    assert schedule.next_run_at is None
    assert engine_row(schedule) is None


def test_renaming_a_paused_schedule_keeps_it_paused(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY, enabled=False)
    page = operator.get(change_url(schedule))
    operator.post(change_url(schedule), admin_form_data(page, name="renamed"))
    schedule.refresh_from_db()
    assert (schedule.name, schedule.status, schedule.next_run_at) == (
        "renamed",
        ScheduleStatus.PAUSED,
        None,
    )
    assert engine_row(schedule) is None


def test_deleting_a_schedule_removes_its_engine_row(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY)
    assert engine_row(schedule) is not None
    response = operator.post(f"{SCHEDULES}{schedule.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Schedule.objects.exists()
    assert engine_row(schedule) is None


def test_bulk_delete_removes_the_engine_rows(operator):
    schedules = [services.schedule_create(job=JobFactory(), cron=DAILY) for _ in range(2)]
    data = {
        "action": "delete_selected",
        "post": "yes",
        "_selected_action": [str(s.pk) for s in schedules],
    }
    response = operator.post(SCHEDULES, data, follow=True)
    assert response.status_code == 200
    assert not Schedule.objects.exists()
    assert not EngineSchedule.objects.filter(name__startswith="hodei:").exists()


# -- schedule actions ----------------------------------------------------------------


def test_pause_and_enable_actions(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY)
    response = action(operator, SCHEDULES, "pause_selected", [schedule])
    assert "1 schedule(s) paused." in messages_of(response)
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.status, schedule.next_run_at) == (
        False,
        ScheduleStatus.PAUSED,
        None,
    )
    assert engine_row(schedule) is None

    before = clock.now()
    response = action(operator, SCHEDULES, "enable_selected", [schedule])
    assert "1 schedule(s) enabled." in messages_of(response)
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.status) == (True, ScheduleStatus.SCHEDULED)
    assert schedule.next_run_at == next_fire_times(DAILY, "UTC", after=before, count=1)[0]
    assert engine_row(schedule).next_run == schedule.next_run_at


def test_run_now_action_queues_an_execution_and_records_it(operator):
    schedule = services.schedule_create(job=JobFactory(command="echo sched"), cron=DAILY)
    response = action(operator, SCHEDULES, "run_now", [schedule])
    execution = Execution.objects.get(schedule=schedule)
    assert execution.status == ExecutionStatus.QUEUED
    assert execution.trigger == Trigger.SCHEDULE
    assert execution.command == "echo sched"
    link = f'<a href="/admin/workermanager/execution/{execution.pk}/change/">'
    assert any(link in m for m in messages_of(response))
    fire = ScheduleFire.objects.get(schedule=schedule)
    assert (fire.outcome, fire.is_manual, fire.execution_id) == (
        FireOutcome.FIRED,
        True,
        execution.pk,
    )


def test_run_now_respects_the_overlap_policy_and_says_so(operator):
    schedule = services.schedule_create(
        job=JobFactory(), cron=DAILY, overlap_policy=OverlapPolicy.FORBID
    )
    ExecutionFactory(job=schedule.job, schedule=schedule, status=ExecutionStatus.RUNNING)
    response = action(operator, SCHEDULES, "run_now", [schedule])
    assert any(FireOutcome.SKIPPED_OVERLAP in m for m in messages_of(response))
    assert Execution.objects.filter(schedule=schedule).count() == 1
    assert ScheduleFire.objects.get(schedule=schedule).outcome == FireOutcome.SKIPPED_OVERLAP


def test_viewer_has_no_schedule_actions_and_posting_one_changes_nothing(viewer):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY)
    page = viewer.get(SCHEDULES)
    assert page.status_code == 200
    assert 'name="action"' not in page.content.decode()
    for name in ("pause_selected", "run_now"):
        assert action(viewer, SCHEDULES, name, [schedule]).status_code == 200
    schedule.refresh_from_db()
    assert schedule.status == ScheduleStatus.SCHEDULED
    assert not Execution.objects.exists()


def test_changelist_shows_last_and_next_run_and_filters(operator):
    active = services.schedule_create(job=JobFactory(), cron=DAILY, name="active-one")
    paused = services.schedule_create(job=JobFactory(), cron=DAILY, name="paused", enabled=False)
    response = operator.get(SCHEDULES)
    assert response.status_code == 200
    html = response.content.decode()
    assert "field-last_run_at" in html and "field-next_run_at" in html
    assert set(response.context["cl"].result_list) == {active, paused}
    paused_only = operator.get(SCHEDULES, {"status__exact": "paused"}).context["cl"].result_list
    assert list(paused_only) == [paused]
    found = operator.get(SCHEDULES, {"q": "active"}).context["cl"].result_list
    assert list(found) == [active]


def test_history_shows_fired_and_skipped_slots(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY)
    execution = ExecutionFactory(job=schedule.job)
    ScheduleFireFactory(schedule=schedule, outcome=FireOutcome.FIRED, execution=execution)
    ScheduleFireFactory(schedule=schedule, outcome=FireOutcome.SKIPPED_OVERLAP)
    ScheduleFireFactory(schedule=schedule, outcome=FireOutcome.MISSED, detail="3 slots")
    html = operator.get(change_url(schedule)).content.decode()
    for outcome in ("fired", "skipped_overlap", "missed", "3 slots", str(execution.pk)):
        assert outcome in html


def test_history_shows_the_latest_twenty_slots_of_this_schedule(operator):
    mine = ScheduleFactory()
    other = ScheduleFactory()
    # Mine are older than every slot of the other schedule.
    mine_fires = [ScheduleFireFactory(schedule=mine) for _ in range(25)]
    for _ in range(25):
        ScheduleFireFactory(schedule=other)
    response = operator.get(change_url(mine))
    formset = response.context["inline_admin_formsets"][0].formset
    shown = [form.instance for form in formset.forms]
    newest_first = sorted(mine_fires, key=lambda f: f.slot_at, reverse=True)
    assert shown == newest_first[:20]


def test_history_is_read_only(operator):
    schedule = ScheduleFactory()
    ScheduleFireFactory(schedule=schedule)
    html = operator.get(change_url(schedule)).content.decode()
    assert 'name="fires-0-outcome"' not in html
    assert "fires-0-DELETE" not in html
    assert 'name="fires-MAX_NUM_FORMS" value="0"' in html  # no row can be added


# -- workers -----------------------------------------------------------------------------


def test_worker_changelist_shows_heartbeat_age_status_capacity_and_use(operator):
    now = clock.now()
    stale_age = timedelta(seconds=settings.HODEI_HEARTBEAT_SECONDS * 2 + 5)
    online = WorkerFactory(
        name="fresh", last_heartbeat_at=now, capacity=4, labels={"zone": "eu-1"}, type="rust"
    )
    WorkerFactory(name="quiet", last_heartbeat_at=now - stale_age)
    WorkerFactory(name="gone", last_heartbeat_at=now - timedelta(hours=1), status="offline")
    WorkerFactory(name="unborn", last_heartbeat_at=None)
    ExecutionFactory(worker=online, status=ExecutionStatus.RUNNING)
    ExecutionFactory(worker=online, status=ExecutionStatus.SUCCEEDED)
    response = operator.get(WORKERS)
    assert response.status_code == 200
    html = response.content.decode()
    rows = {row.split("</tr>")[0] for row in html.split("<tr")[1:]}

    def row_of(name):
        (row,) = [r for r in rows if f">{name}<" in r]
        return row

    assert "hodei-heartbeat-online" in row_of("fresh")
    assert "0s ago (online)" in row_of("fresh")
    assert "1 / 4" in row_of("fresh")
    assert "eu-1" in row_of("fresh") and "rust" in row_of("fresh")
    assert "hodei-heartbeat-stale" in row_of("quiet")
    assert "hodei-heartbeat-offline" in row_of("gone")
    assert "1h 0m ago" in row_of("gone")
    assert "never" in row_of("unborn")
    assert "0 / 1" in row_of("quiet")


def test_worker_changelist_counts_running_work_without_joining_every_execution(operator):
    workers = WorkerFactory.create_batch(3, capacity=2)
    for worker in workers:
        ExecutionFactory(worker=worker, status=ExecutionStatus.RUNNING)
        ExecutionFactory.create_batch(3, worker=worker, status=ExecutionStatus.SUCCEEDED)
    with CaptureQueriesContext(connection) as queries:
        response = operator.get(WORKERS)
    assert response.status_code == 200
    admin = response.context["cl"].model_admin
    assert {admin.in_use(w) for w in response.context["cl"].result_list} == {"1 / 2"}
    for query in queries:
        # An aggregate over a join reads every execution a worker ever ran (10^6 rows).
        assert 'JOIN "workermanager_execution"' not in query["sql"], query["sql"]


def test_worker_changelist_filters_by_status_and_type(operator):
    rust = WorkerFactory(type="rust")
    offline = WorkerFactory(status="offline")
    assert list(operator.get(WORKERS, {"type__exact": "rust"}).context["cl"].result_list) == [rust]
    by_status = operator.get(WORKERS, {"status__exact": "offline"}).context["cl"].result_list
    assert list(by_status) == [offline]


def test_worker_page_lists_the_executions_it_is_running(operator):
    worker = WorkerFactory(last_heartbeat_at=clock.now())
    running = ExecutionFactory(worker=worker, status=ExecutionStatus.RUNNING, command="sleep 99")
    done = ExecutionFactory(worker=worker, status=ExecutionStatus.SUCCEEDED)
    response = operator.get(change_url(worker))
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert [form.instance for form in formset.forms] == [running]
    html = response.content.decode()
    assert "sleep 99" in html and str(done.pk) not in html
    assert f"/admin/workermanager/execution/?worker__id__exact={worker.pk}" in html


def test_drain_and_undrain(operator):
    worker = WorkerFactory(last_heartbeat_at=clock.now())
    response = action(operator, WORKERS, "drain_selected", [worker])
    assert "1 worker(s) draining." in messages_of(response)
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.DRAINING

    response = action(operator, WORKERS, "undrain_selected", [worker])
    assert "1 worker(s) taking work again." in messages_of(response)
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.ONLINE


def test_a_draining_workers_heartbeat_keeps_it_draining(operator, operator_user):
    worker = WorkerFactory(last_heartbeat_at=clock.now() - timedelta(seconds=3))
    action(operator, WORKERS, "drain_selected", [worker])
    worker.refresh_from_db()
    worker.heartbeat(now=clock.now())
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.DRAINING

    api = client_for("scheduler", operator_user)
    response = api.post(f"/api/v1/workers/{worker.pk}/heartbeat")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "draining"
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.DRAINING


def test_drain_of_an_offline_worker_says_so_and_changes_nothing(operator):
    offline = WorkerFactory(status=WorkerStatus.OFFLINE)
    online = WorkerFactory()
    response = action(operator, WORKERS, "drain_selected", [offline, online])
    messages = messages_of(response)
    assert "1 worker(s) draining." in messages
    assert f"Worker {offline.name} is offline; only an online worker can drain." in messages
    offline.refresh_from_db()
    online.refresh_from_db()
    assert (offline.status, online.status) == (WorkerStatus.OFFLINE, WorkerStatus.DRAINING)


def test_undrain_of_a_worker_that_is_not_draining_says_so(operator):
    online = WorkerFactory()
    response = action(operator, WORKERS, "undrain_selected", [online])
    messages = messages_of(response)
    assert "1 worker(s) taking work again." not in messages
    assert f"Worker {online.name} is online; only a draining worker can undrain." in messages
    online.refresh_from_db()
    assert online.status == WorkerStatus.ONLINE


def test_workers_are_not_added_or_edited_by_hand(operator):
    worker = WorkerFactory(name="agent-1", capacity=2)
    assert operator.get(WORKERS + "add/").status_code == 403
    page = operator.get(change_url(worker))
    assert page.status_code == 200
    assert 'name="capacity"' not in page.content.decode()
    operator.post(change_url(worker), {"name": "renamed", "capacity": "64"})
    worker.refresh_from_db()
    assert (worker.name, worker.capacity) == ("agent-1", 2)


def test_viewer_cannot_drain(viewer):
    worker = WorkerFactory()
    assert "drain_selected" not in viewer.get(WORKERS).content.decode()
    action(viewer, WORKERS, "drain_selected", [worker])
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.ONLINE
    assert Worker.objects.count() == 1
