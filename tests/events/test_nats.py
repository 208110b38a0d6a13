"""Events to NATS JetStream through the relay process, against real NATS servers: the
one on 127.0.0.1:4222, and servers this test starts and stops on free ports."""

import asyncio
import os
import shutil
import signal
import subprocess
import uuid

import nats
import pytest
from nats.js.errors import NotFoundError

from events.models import Event
from events.services import event_emit
from pipelines import services as pipelines
from tests.factories import JobFactory, PipelineFactory
from tests.pipelines.test_runs import run_until_done
from tests.processes import free_port, start_relay, stop, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NATS = "nats://127.0.0.1:4222"


def nats_reachable(url=NATS) -> bool:
    async def probe():
        nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
        await nc.close()

    try:
        asyncio.run(probe())
        return True
    except Exception:
        return False


class Stream:
    """A stream of this test's own (unique name and subject prefix), read back in order."""

    def __init__(self, url=NATS):
        self.url = url
        tag = uuid.uuid4().hex[:10]
        self.name, self.prefix = f"HODEITEST_{tag}", f"hodeitest{tag}"

    def env(self, child_env: dict, **extra) -> dict:
        return {
            **child_env,
            "HODEI_NATS_URL": self.url,
            "HODEI_NATS_STREAM": self.name,
            "HODEI_NATS_SUBJECT_PREFIX": self.prefix,
            "HODEI_RELAY_POLL_SECONDS": "0.1",
            **extra,
        }

    def _call(self, fn):
        async def run():
            nc = await nats.connect(self.url, connect_timeout=2, allow_reconnect=False)
            try:
                return await fn(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(run())

    def count(self) -> int:
        async def count(js):
            try:
                return (await js.stream_info(self.name)).state.messages
            except NotFoundError:
                return 0

        try:
            return self._call(count)
        except Exception:
            return -1

    def messages(self) -> list:
        async def read(js):
            info = await js.stream_info(self.name)
            return [
                await js.get_msg(self.name, seq)
                for seq in range(info.state.first_seq, info.state.last_seq + 1)
            ]

        return self._call(read)

    def delete(self) -> None:
        async def delete(js):
            try:
                await js.delete_stream(self.name)
            except NotFoundError:
                pass

        self._call(delete)


def assert_published_once_in_order(stream: Stream, events: list[Event]) -> None:
    import json

    messages = stream.messages()
    ids = [json.loads(m.data)["id"] for m in messages]
    assert ids == [e.id for e in events]  # each once, in the order they happened
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [str(e.id) for e in events]
    assert [m.subject for m in messages] == [f"{stream.prefix}.{e.type}" for e in events]


@pytest.fixture
def stream():
    if not nats_reachable():
        pytest.skip(f"NATS is not running at {NATS}")
    stream = Stream()
    yield stream
    stream.delete()


def test_every_event_of_a_run_reaches_jetstream_once_in_order(child_env, stream, make_agent):
    relay = start_relay(stream.env(child_env))
    try:
        pipeline = PipelineFactory()
        first = JobFactory(pipeline=pipeline, command="echo one")
        JobFactory(pipeline=pipeline, command="echo two").depends_on.set([first])
        run = run_until_done(make_agent(), pipelines.pipeline_run_start(pipeline=pipeline))
        total = Event.objects.count()
        wait_for(lambda: stream.count() == total, timeout=20)
        wait_for(lambda: not Event.objects.filter(published_at__isnull=True).exists())
    finally:
        stop(relay)
    events = list(Event.objects.order_by("id"))
    assert_published_once_in_order(stream, events)
    run_types = [e.type for e in events if e.subject == f"pipeline_run:{run.pk}"]
    assert run_types == ["pipeline_run.started", "pipeline_run.finished"]


def test_a_relay_killed_mid_batch_republishes_and_nats_drops_the_duplicates(child_env, stream):
    total = 3000
    Event.objects.bulk_create(
        Event(type="worker.online", subject=f"worker:{i % 7}", payload={"n": i})
        for i in range(total)
    )
    # One batch of everything: acknowledged one by one, marked published only at its end.
    env = stream.env(child_env, HODEI_RELAY_BATCH=str(total))
    relay = start_relay(env)
    try:
        wait_for(lambda: 0 < stream.count() < total, timeout=30, interval=0.005)
        os.kill(relay.pid, signal.SIGKILL)
        relay.wait()
        in_stream = stream.count()
        assert Event.objects.filter(published_at__isnull=False).count() < in_stream
    finally:
        stop(relay)
    relay = start_relay(env)
    try:
        wait_for(lambda: not Event.objects.filter(published_at__isnull=True).exists(), timeout=60)
    finally:
        stop(relay)
    assert stream.count() == total
    assert_published_once_in_order(stream, list(Event.objects.order_by("id")))


@pytest.fixture
def own_nats(tmp_path):
    """start() / stop() a JetStream nats-server on a free port, keeping its store."""
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed")
    port = free_port()
    procs = []

    def start():
        proc = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        wait_for(lambda: nats_reachable(f"nats://127.0.0.1:{port}"), timeout=10)
        return proc

    start.url = f"nats://127.0.0.1:{port}"
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_nats_down_loses_nothing_and_delivery_resumes(child_env, own_nats):
    server = own_nats()
    stream = Stream(own_nats.url)
    relay = start_relay(stream.env(child_env))

    def emit(n, offset):
        for i in range(n):
            event_emit("worker.online", subject=("worker", i), ids={}, payload={"n": offset + i})

    try:
        emit(20, 0)
        wait_for(lambda: stream.count() == 20, timeout=20)
        server.terminate()
        server.wait(10)
        emit(30, 20)  # while NATS is down
        wait_for(lambda: "NATS unavailable" in relay.log_path.read_text(), timeout=20)
        assert Event.objects.filter(published_at__isnull=True).count() == 30
        own_nats()  # back, with its store
        wait_for(lambda: not Event.objects.filter(published_at__isnull=True).exists(), timeout=90)
    finally:
        stop(relay)
    assert stream.count() == 50
    assert_published_once_in_order(stream, list(Event.objects.order_by("id")))
    assert "publishing resumes" in relay.log_path.read_text()


def test_without_a_nats_url_nothing_connects(child_env):
    env = {**child_env, "HODEI_NATS_URL": ""}
    relay = start_relay(env)
    try:
        event_emit("worker.online", subject=("worker", 1), ids={}, payload={})
        wait_for(lambda: Event.objects.filter(dispatched_at__isnull=False).exists(), timeout=10)
    finally:
        stop(relay)
    assert Event.objects.get().published_at is None
    assert "no NATS" in relay.log_path.read_text()
