"""workermanager.announcements: one listening connection per process for every long-poll
claim waiting in it, each woken by work of its type announced after its mark."""

import threading
import time

import pytest
from django.db import connection

from workermanager import services
from workermanager.announcements import Announcements

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="NOTIFY")


@pytest.fixture
def announcements():
    made = Announcements()
    yield made
    made.stop()


def listening_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = 'LISTEN hodei_executions'"
        )
        return cursor.fetchone()[0]


def waited(announcements, mark, worker_type: str, seconds: float = 5.0) -> float:
    started = time.monotonic()
    announcements.wait(mark, worker_type=worker_type, seconds=seconds)
    return time.monotonic() - started


def assert_listening_again(announcements) -> None:
    """Connected again within seconds, and work queued after that wakes a claim."""
    deadline = time.monotonic() + 10
    while announcements.mark() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    again = announcements.mark()
    assert again is not None
    threading.Timer(0.2, services.execution_enqueue, kwargs={"command": "true"}).start()
    assert waited(announcements, again, "default") < 4


@on_postgresql
def test_work_of_the_type_announced_after_the_mark_wakes_the_claim(announcements):
    mark = announcements.mark()
    assert mark is not None
    threading.Timer(0.2, services.execution_enqueue, kwargs={"command": "true"}).start()
    assert waited(announcements, mark, "default") < 4


@on_postgresql
def test_work_of_another_type_does_not_wake_it_and_work_for_any_type_does(announcements):
    mark = announcements.mark()
    services.execution_enqueue(command="true", worker_type="gpu")
    assert waited(announcements, mark, "default", seconds=0.5) >= 0.5
    services.execution_enqueue(command="true", worker_type="")  # any worker's
    assert waited(announcements, mark, "default") < 4


@on_postgresql
def test_work_announced_before_the_mark_does_not_wake_it(announcements):
    # Received before the mark: committed before the claim looked, so the claim saw it.
    first = announcements.mark()
    services.execution_enqueue(command="true")
    assert waited(announcements, first, "default") < 4
    assert waited(announcements, announcements.mark(), "default", seconds=0.5) >= 0.5


@on_postgresql
def test_every_claim_of_the_process_shares_one_connection(announcements):
    before = listening_backends()
    marks = [announcements.mark() for _ in range(5)]
    assert None not in marks
    assert listening_backends() == before + 1


@on_postgresql
def test_a_lost_connection_wakes_every_claim_and_is_replaced(announcements):
    mark = announcements.mark()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = 'LISTEN hodei_executions'"
        )
    assert waited(announcements, mark, "default") < 4  # woken to look at once
    assert_listening_again(announcements)


def test_without_notify_a_claim_polls(announcements, monkeypatch):
    monkeypatch.setattr("workermanager.announcements.supports_notify", lambda: False)
    assert announcements.mark() is None
    assert 0.3 <= waited(announcements, None, "default", seconds=0.3) < 2


@on_postgresql
def test_an_error_while_listening_wakes_every_claim_and_the_thread_carries_on(
    announcements, monkeypatch
):
    mark = announcements.mark()
    calls = []

    def broken(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return []

    monkeypatch.setattr("hodei.lib.listen.Listener.drain", broken)
    services.execution_enqueue(command="true")  # makes the connection readable
    assert waited(announcements, mark, "default") < 4  # woken to look at once
    monkeypatch.undo()
    assert_listening_again(announcements)
