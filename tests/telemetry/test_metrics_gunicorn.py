"""/metrics under gunicorn with several worker processes (multiprocess mode)."""

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
