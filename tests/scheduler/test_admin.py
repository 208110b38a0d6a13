"""The admin of schedules, driven through Django's test client."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django_q.models import Schedule as EngineSchedule

from hodei.lib import clock
from scheduler import services
from scheduler.choices import FireOutcome, OverlapPolicy, ScheduleStatus
from scheduler.cron import next_fire_times
from scheduler.models import Schedule, ScheduleFire
from tests.factories import (
    ExecutionFactory,
    JobFactory,
    ScheduleFactory,
    ScheduleFireFactory,
    action,
    admin_form_data,
    change_url,
    messages_of,
)
from workermanager.choices import ExecutionStatus, Trigger
from workermanager.models import Execution

pytestmark = pytest.mark.django_db

SCHEDULES = "/admin/scheduler/schedule/"
WORKERS = "/admin/workermanager/worker/"
PREVIEW = SCHEDULES + "preview/"
DAILY = "0 3 * * *"  # stable across the few milliseconds of a test


def engine_row(schedule):
    return EngineSchedule.objects.filter(name=f"hodei:{schedule.pk}").first()


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


def test_the_change_page_shows_the_next_five_fire_times_once(operator):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY, timezone="Asia/Tokyo")
    html = operator.get(change_url(schedule)).content.decode()
    # One place: the preview box, filled from the saved cron and timezone by its script.
    assert 'id="hodei-preview"' in html and "schedule-preview.js" in html
    assert "field-upcoming" not in html
    shown = operator.get(PREVIEW, {"cron": schedule.cron, "timezone": schedule.timezone}).json()
    assert [t["at"] for t in shown["upcoming"]] == [
        t.isoformat() for t in services.schedule_upcoming(schedule)
    ]


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
    at = [t["at"] for t in times]
    assert at in ([t.isoformat() for t in expected[:5]], [t.isoformat() for t in expected[1:]])
    # In the schedule's own timezone, with UTC beside.
    first = expected[0] if at[0] == expected[0].isoformat() else expected[1]
    madrid = first.astimezone(ZoneInfo("Europe/Madrid"))
    assert times[0]["local"] == madrid.strftime("%a %Y-%m-%d %H:%M:%S %Z")
    assert times[0]["utc"] == first.strftime("%H:%M:%S UTC")
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
    assert any("skipped: previous run still active" in m for m in messages_of(response))
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
    assert "field-last_run" in html and "field-next_run" in html
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
    history = html[html.index("History (latest") :]
    for shown in (
        "fired",
        "skipped: previous run still active",
        "missed while no scheduler ran",
        "3 slots",
        str(execution.pk)[:13],
        "scheduled slot",
    ):
        assert shown in history, shown
    for raw in ("skipped_overlap", "Is manual", "IS MANUAL"):
        assert raw not in history, raw


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


def test_run_now_on_the_schedule_page_opens_the_execution(operator, viewer):
    schedule = services.schedule_create(job=JobFactory(), cron=DAILY)
    page = operator.get(change_url(schedule)).content.decode()
    url = f"{SCHEDULES}{schedule.pk}/run/"
    assert 'id="hodei-run-now"' in page and url in page
    assert "hodei-run-now" not in viewer.get(change_url(schedule)).content.decode()
    assert viewer.post(url).status_code == 404

    response = operator.post(url)
    execution = Execution.objects.get(schedule=schedule)
    assert response["Location"] == f"/admin/workermanager/execution/{execution.pk}/change/"
    assert ScheduleFire.objects.get(schedule=schedule).is_manual
