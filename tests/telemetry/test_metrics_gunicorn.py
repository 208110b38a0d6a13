"""/metrics under gunicorn with several worker processes (multiprocess mode)."""

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import token_create
from tests.factories import UserFactory
from tests.processes import start_service, stop

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_http_metrics_add_up_across_gunicorn_workers(child_env, tmp_path):
    _, token = token_create(user=UserFactory(is_superuser=True))
    proc, base = start_service(
        {**child_env, "HODEI_VAR_DIR": str(tmp_path), "HODEI_ACCESS_LOG": "0"},
        "scheduler",
        args=["-c", "hodei/gunicorn_conf.py", "--workers", "3", "--threads", "1"],
    )
    headers = {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(30):
            assert requests.get(f"{base}/api/v1/workers", headers=headers, timeout=5).ok
        for _ in range(10):
            text = requests.get(f"{base}/metrics", headers=headers, timeout=5).text
        files = list((tmp_path / "prometheus" / "scheduler").glob("*.db"))
        pids = {f.stem.split("_")[-1] for f in files}
    finally:
        stop(proc)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    by_method = samples[("django_http_requests_total_by_method_total", (("method", "GET"),))]
    # 1 health check at least, 30 API calls, 9 earlier scrapes: counted by every worker.
    assert by_method >= 40
    assert len(pids) >= 2, files  # the requests were served by several processes
    assert ("hodei_workers", (("status", "online"),)) in samples


def _cancelled_count() -> float:
    from telemetry.models import MetricValue

    found = MetricValue.objects.filter(
        name="hodei_executions_finished_total", labels="status=cancelled,type=bash"
    ).first()
    return found.value if found else 0.0


def _queue_and_cancel(base: str, headers: dict) -> None:
    queued = requests.post(
        f"{base}/api/v1/execute", json={"command": "true"}, headers=headers, timeout=5
    )
    assert queued.status_code == 201, queued.text
    url = f"{base}/api/v1/executions/{queued.json()['id']}/cancel"
    assert requests.post(url, headers=headers, timeout=5).ok


def test_web_workers_flush_domain_metrics_from_a_thread_and_on_their_way_out(child_env, tmp_path):
    # Not in a transaction of each request: a thread of each worker flushes them every
    # HODEI_METRICS_FLUSH_SECONDS, and a worker that stops flushes what is left.
    _, token = token_create(user=UserFactory(is_superuser=True))
    headers = {"Authorization": f"Bearer {token}"}
    conf = ["-c", "hodei/gunicorn_conf.py", "--workers", "1"]
    env = {**child_env, "HODEI_VAR_DIR": str(tmp_path), "HODEI_ACCESS_LOG": "0"}

    proc, base = start_service(
        {**env, "HODEI_METRICS_FLUSH_SECONDS": "0.2"}, "workermanager", args=conf
    )
    try:
        _queue_and_cancel(base, headers)
        deadline = time.monotonic() + 10
        while _cancelled_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _cancelled_count() == 1  # flushed while the worker runs on
        assert proc.poll() is None
    finally:
        stop(proc)

    # A flush far away: only the worker's exit can have written the second one.
    proc, base = start_service(
        {**env, "HODEI_METRICS_FLUSH_SECONDS": "3600"}, "workermanager", args=conf
    )
    try:
        _queue_and_cancel(base, headers)
        time.sleep(0.5)
        assert _cancelled_count() == 1
    finally:
        assert stop(proc) == 0
    assert _cancelled_count() == 2
