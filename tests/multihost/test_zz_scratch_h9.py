import time
import pytest
from tests.multihost.conftest import log_of
from tests.multihost.test_agents_across_hosts import registration_token, log_text, settled
from tests.processes import wait_for, stop
from workermanager.models import Execution
from workermanager.services import execution_enqueue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

def test_scratch(network, host_agents):
    host_a = network.hosts["a"]
    a = host_agents(host_a, token=registration_token(), name="host-a", concurrency=2)
    chatty = execution_enqueue(command="echo chatty-begun; for i in $(seq 1 400); do head -c 1000 /dev/zero | tr '\\0' x; echo; sleep 0.05; done; echo chatty-done", )
    timed = execution_enqueue(command="echo timed-begun; sleep 30", timeout_seconds=3)
    wait_for(lambda: "timed-begun" in log_text(timed) and "chatty-begun" in log_text(chatty), timeout=15)
    t0 = time.monotonic()
    network.cut(host_a)
    print("cut at", time.strftime("%H:%M:%S"))
    time.sleep(40)
    network.restore(host_a)
    print("restored at", time.strftime("%H:%M:%S"))
    for e in (chatty, timed):
        r = settled(e, timeout=60)
        print(r.status, r.error, r.started_at, r.finished_at, len(log_text(r)))
    t1 = time.monotonic()
    a.send_signal(15)
    a.wait(60)
    print("stopped in", time.monotonic() - t1)
    print(log_of(a))
