"""The dashboard on the admin's index page."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from accounts.roles import OPERATORS, VIEWERS
from console import dashboard
from hodei.lib import clock
from tests.factories import ExecutionFactory, UserFactory, WorkerFactory, logged_in, role_user
from workermanager.choices import ExecutionStatus

pytestmark = pytest.mark.django_db

S = ExecutionStatus
CHART = set(dashboard.CHART_STATUSES)


@pytest.fixture
def now():
    return clock.now()


@pytest.fixture
def history(now):
    """Executions in the last 24 hours and before, as (status, hours ago)."""
    recent = [
        (S.SUCCEEDED, 1),
        (S.SUCCEEDED, 2),
        (S.SUCCEEDED, 2),
        (S.FAILED, 5),
        (S.FAILED, 5),
        (S.TIMED_OUT, 7),
        (S.CANCELLED, 9),
        (S.LOST, 20),
        (S.RUNNING, 0.2),
        (S.QUEUED, 0.5),
        (S.QUEUED, 0.01),
    ]
    older = [(S.SUCCEEDED, 30), (S.SUCCEEDED, 48), (S.FAILED, 25), (S.QUEUED, 26)]
    # Oldest first, as in life: ids (UUIDv7) then sort as created_at does.
    for status, hours in sorted(recent + older, key=lambda row: -row[1]):
        ExecutionFactory(status=status, created_at=now - timedelta(hours=hours))
    return recent


@pytest.fixture
def workers(now):
    beat = timedelta(seconds=settings.HODEI_HEARTBEAT_SECONDS)
    WorkerFactory(last_heartbeat_at=now)
    WorkerFactory(last_heartbeat_at=now - beat, status="draining")
    WorkerFactory(last_heartbeat_at=now - beat * 3)  # stale: missed beats, not yet reaped
    WorkerFactory(last_heartbeat_at=None)
    WorkerFactory(last_heartbeat_at=now - timedelta(hours=2), status="offline")


def test_figures(history, workers, now):
    d = dashboard.build(now=now)
    counts = {o["status"]: o["count"] for o in d["outcomes"]}
    assert counts == {
        "queued": 2,
        "running": 1,
        "succeeded": 3,
        "failed": 2,
        "timed_out": 1,
        "cancelled": 1,
        "lost": 1,
        "pending": 0,
        "skipped": 0,
        "expired": 0,
    }
    assert d["total_24h"] == 11
    assert d["success_rate"] == 37.5  # 3 of the 8 finished
    assert d["queue_depth"] == 3  # every queued one, however old
    assert d["oldest_queued_age"] == timedelta(hours=26)
    assert d["workers"] == {"online": 2, "stale": 2, "offline": 1}


def test_chart_has_one_stacked_bar_per_hour_and_outcome(history, now):
    chart = dashboard.build(now=now)["chart"]
    pairs = {
        ((now - timedelta(hours=h)).replace(minute=0, second=0, microsecond=0), status)
        for status, h in history
        if status in CHART
    }
    assert len(chart["bars"]) == len(pairs)
    assert chart["peak"] == max(
        sum(1 for s, h in history if s in CHART and (now - timedelta(hours=h)).hour == hour)
        for hour in range(24)
    )
    # The tallest hour fills the chart's height; bars stay inside it.
    columns: dict = {}
    for bar in chart["bars"]:
        columns[bar.x] = columns.get(bar.x, 0) + bar.height
        assert bar.y >= 0 and bar.y + bar.height <= chart["height"] + 1e-9
    assert max(columns.values()) == pytest.approx(chart["height"])
    assert len(chart["labels"]) == 8


def test_empty_dashboard(now):
    d = dashboard.build(now=now)
    assert d["total_24h"] == 0 and d["queue_depth"] == 0
    assert d["success_rate"] is None and d["oldest_queued_age"] is None
    assert d["chart"]["bars"] == []


def test_index_page_shows_the_dashboard(history, workers):
    response = logged_in(role_user(VIEWERS)).get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    section = html[html.index('<section class="hodei-dashboard"') : html.index("</section>")]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section))
    assert "11 executions, last 24 h" in text
    assert "37.5% success rate, last 24 h" in text
    assert "3 queued, oldest 26h 0m" in text
    assert "2 2 1 workers online / stale / offline" in text
    for status, count in [
        ("queued", 2),
        ("running", 1),
        ("succeeded", 3),
        ("failed", 2),
        ("timed_out", 1),
        ("cancelled", 1),
        ("lost", 1),
    ]:
        assert f"{status} {count}" in text
        assert f'/admin/workermanager/execution/?status__exact={status}"' in section
    svg = section[section.index("<svg") : section.index("</svg>")]
    rects = re.findall(r"<rect [^>]*>", svg)
    assert len(rects) == len(dashboard.build()["chart"]["bars"]) > 0
    assert all(re.search(r'height="\d+(\.\d+)?"', r) for r in rects)
    assert "<title>" in svg


def test_index_loads_nothing_from_other_sites(history):
    html = logged_in(role_user(OPERATORS)).get("/admin/").content.decode()
    assets = re.findall(r"<(?:script|link|img)\b[^>]*>", html)
    assert any("hodei/admin.css" in tag for tag in assets)
    for tag in assets:
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", tag), tag
    for path in ("hodei/admin.css", "hodei/execution-tail.js", "hodei/schedule-preview.js"):
        content = Path(finders.find(path)).read_text()
        assert not re.search(r"https?://|url\(\s*['\"]?//", content), path


def test_staff_without_hodei_permissions_see_no_figures(history):
    staff = UserFactory(is_staff=True)
    response = logged_in(staff).get("/admin/")
    assert response.status_code == 200
    assert "hodei-dashboard" not in response.content.decode()
