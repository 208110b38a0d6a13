import time

import pytest

from agent.loop import Agent, AgentConfig
from workermanager.choices import TERMINAL


@pytest.fixture
def make_agent(db, tmp_path):
    """An in-process agent, driven one step at a time by the test."""
    agents = []

    def make(**overrides) -> Agent:
        options = dict(
            type="default",
            name=f"test-agent-{len(agents)}",
            concurrency=2,
            heartbeat_seconds=0.2,
            poll_seconds=0.05,
            kill_grace_seconds=0.5,
            shutdown_grace_seconds=0.5,
            workdir_root=str(tmp_path),
        )
        options.update(overrides)
        agent = Agent(AgentConfig(**options))
        agent.register()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.shutdown()


def drive(agent: Agent, execution, *, timeout: float = 10.0, until=None):
    """Step ``agent`` until ``execution`` is settled (or ``until(execution)`` holds)."""
    until = until or (lambda e: e.status in TERMINAL and e.id not in agent.runs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.step(timeout=0.02)
        execution.refresh_from_db()
        if until(execution):
            return execution
    raise AssertionError(f"execution still {execution.status} after {timeout} s")


def log_text(execution, stream=None) -> str:
    chunks = execution.logs.order_by("seq")
    if stream:
        chunks = chunks.filter(stream=stream)
    return "".join(c.message for c in chunks)
