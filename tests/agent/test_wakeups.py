"""Database agents woken by PostgreSQL NOTIFY: an execution queued alone is announced to
every agent, and one of them (notify.designated) is asked first; the others stay asleep
unless it has no room (it passes the work on) or its claims fill every slot (more may
be queued). Real LISTEN connections and commits, so PostgreSQL only."""

import select
import time
import uuid

import pytest
from django.db import connection, transaction

from agent.loop import Agent, AgentConfig
from agent.transport_db import DatabaseTransport
from tests.factories import WorkerFactory
from workermanager import selectors, services
from workermanager.choices import WorkerStatus
from workermanager.credentials import worker_credential_issue, worker_credential_revoke
from workermanager.notify import designated, notify_queued, queued_payload

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="NOTIFY is PostgreSQL's"
)


@pytest.fixture
def agents(workdir_root):
    made = []

    def make(name: str, *, type: str = "default", concurrency: int = 1) -> Agent:
        agent = Agent(
            AgentConfig(
                type=type,
                name=name,
                concurrency=concurrency,
                workdir_root=workdir_root,
                isolation="none",
            ),
            DatabaseTransport(),
        )
        agent.register()
        made.append(agent)
        for other in made:  # each reads who is online (as on a registration's NOTIFY)
            other.transport._read_peers()
        return agent

    yield make
    for agent in made:
        agent.shutdown()


def heard(agent: Agent, *, seconds: float = 2.0) -> set[str]:
    """What the agent's transport reports for the notifications that came within
    ``seconds`` (waiting for the first, then taking whatever else is there)."""
    kinds: set[str] = set()
    deadline = time.monotonic() + seconds
    fd = agent.transport.fileno()
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        kinds |= agent.transport.wakeups()
        deadline = min(deadline, time.monotonic() + 0.2)
    return kinds


def test_payloads_and_who_is_asked_first():
    assert queued_payload("gpu 0195-ab") == ("gpu", "0195-ab")
    assert queued_payload("") == ("", "")
    peers = [uuid.uuid4() for _ in range(3)]
    ids = [str(uuid.uuid4()) for _ in range(300)]
    picks = [designated(i, peers) for i in ids]
    assert picks == [designated(i, peers) for i in ids]  # the same in every agent
    assert {peers.index(p) for p in picks} == {0, 1, 2}  # spread over all of them
    assert designated("not-an-id", peers) is None
    assert designated(ids[0], []) is None


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_an_execution_queued_alone_wakes_only_the_agent_asked_first(agents):
    a, b = agents("wake-a"), agents("wake-b")
    execution = services.execution_enqueue(command="true", type="bash")
    first = designated(str(execution.id), sorted([a.transport.worker.pk, b.transport.worker.pk]))

    got = {agent.transport.worker.pk: heard(agent, seconds=0.5) for agent in (a, b)}

    assert got[first] == {"first"}
    assert [kinds for pk, kinds in got.items() if pk != first] == [set()]


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_work_queued_together_or_for_another_type_wakes_accordingly(agents):
    a, b = agents("wake-a"), agents("wake-b")
    gpu = agents("wake-gpu", type="gpu")
    with transaction.atomic():
        notify_queued("default")  # several at once (a release, a fan-out): no id
    assert [heard(x, seconds=0.5) for x in (a, b, gpu)] == [{"work"}, {"work"}, set()]

    services.execution_enqueue(command="true", type="bash", worker_type="gpu")
    assert heard(gpu) == {"first"}  # the only gpu agent
    assert [heard(x, seconds=0.3) for x in (a, b)] == [set(), set()]


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_agent_asked_first_passes_the_work_on_when_it_has_no_room(agents):
    full, other = agents("wake-full"), agents("wake-other")
    full.config.concurrency = 0  # no room
    peers = sorted([full.transport.worker.pk, other.transport.worker.pk])
    for _ in range(40):
        execution = services.execution_enqueue(command="true", type="bash")
        if designated(str(execution.id), peers) == full.transport.worker.pk:
            break
        heard(other, seconds=0.5)  # asked first for this one itself: not the case tested
        services.execution_cancel(execution=execution)
    else:
        pytest.fail("no execution was designated to the full agent")
    select.select([full.transport.fileno()], [], [], 2.0)

    full.wait_io(timeout=0)  # hears "first", has no room: passes it on

    assert heard(other) == {"work"}
    other.claim(now=time.monotonic())
    assert str(execution.id) in other.runs


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_an_agent_whose_claim_fills_its_slots_tells_the_others(agents):
    busy, idle = agents("wake-busy"), agents("wake-idle")
    for _ in range(2):
        services.execution_enqueue(command="sleep 2", type="bash")
    heard(idle, seconds=0.5)  # whatever it was asked first for, forgotten
    idle.wanted = False

    assert busy.claim(now=time.monotonic()) == 1  # one slot, one claimed: more may wait

    assert heard(idle) == {"work"}
    assert idle.claim(now=time.monotonic()) == 1


@pytest.mark.django_db
def test_only_online_database_agents_are_asked_first():
    plain = WorkerFactory(status=WorkerStatus.ONLINE)
    http = WorkerFactory(status=WorkerStatus.ONLINE)
    worker_credential_issue(worker=http)
    was_http = WorkerFactory(status=WorkerStatus.ONLINE, type="gpu")
    worker_credential_issue(worker=was_http)
    worker_credential_revoke(worker=was_http)
    WorkerFactory(status=WorkerStatus.OFFLINE)

    assert selectors.database_agents_online() == sorted(
        [(plain.pk, "default"), (was_http.pk, "gpu")]
    )
