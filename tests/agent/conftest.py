import os
import time

from agent.loop import Agent
from workermanager.choices import TERMINAL
from workermanager.models import Worker


def drive(agent: Agent, execution, *, timeout: float = 10.0, until=None):
    """Step ``agent`` until ``execution`` is settled (or ``until(execution)`` holds)."""
    until = until or (lambda e: e.status in TERMINAL and str(e.id) not in agent.runs)
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


def worker_of(agent: Agent) -> Worker:
    """The agent's Worker row, as it is now."""
    return Worker.objects.get(pk=agent.worker_id)


def workdirs_left(agent: Agent, root: str) -> list[str]:
    """The working directories under ``root``, but the agent's spare shells' (ready for
    the next commands: agent/spare.py)."""
    spares = {os.path.basename(path) for path in agent.spares.workdirs()}
    return sorted(set(os.listdir(root)) - spares)
