"""Input that looked valid but was not: host-dependent timezones, names with control or
bidi-override characters, label keys and values a k=v list would split."""

import pytest

from tests.factories import JobFactory, PipelineFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("zone", ["Factory", "localtime", "posixrules", "Mars/Olympus"])
def test_only_real_iana_timezones_are_accepted(sched, zone):
    body = {"job_id": str(JobFactory().id), "cron": "0 3 * * *", "timezone": zone}
    response = sched.post("/api/v1/schedule", body, format="json")
    assert response.status_code == 400
    assert "timezone" in response.json()["fields"]


@pytest.mark.parametrize(
    "name", ["evil\u202egnp.exe", "line\nbreak", "bell\x07", "zero\u200bwidth", "esc\x1b[2J"]
)
@pytest.mark.parametrize(
    ("service", "path", "extra"),
    [
        ("orchestrator", "/api/v1/pipelines", {}),
        ("orchestrator", "/api/v1/jobs", {"pipeline_id": None}),
        ("scheduler", "/api/v1/schedule", {"job_id": None, "cron": "0 3 * * *"}),
        ("scheduler", "/api/v1/workers", {"type": "rust"}),
    ],
)
def test_names_with_control_or_bidi_characters_are_refused(orch, sched, name, service, path, extra):
    client = {"orchestrator": orch, "scheduler": sched}[service]
    body = dict(extra, name=name)
    if "pipeline_id" in body:
        body["pipeline_id"] = str(PipelineFactory().id)
    if "job_id" in body:
        body["job_id"] = str(JobFactory().id)
    response = client.post(path, body, format="json")
    assert response.status_code == 400, response.content
    assert "name" in response.json()["fields"]


@pytest.mark.parametrize(
    ("labels", "field_ok"),
    [
        ({"zone": "eu,west"}, True),  # any value, passed structured to the agent
        ({"a=b": "c, d=e"}, False),  # a key that would inject labels
        ({"zone": "eu\u202ewest"}, False),
        ({"team/app": "x"}, True),
    ],
)
def test_managed_worker_labels_are_structured_and_validated(wm, labels, field_ok):
    from workermanager.api.serializers import ManagedWorkerInputSerializer

    serializer = ManagedWorkerInputSerializer(data={"type": "default", "labels": labels})
    assert serializer.is_valid() == field_ok, serializer.errors


def test_the_local_provider_passes_labels_as_json(tmp_path):
    from agent.cli import labels_of

    # (the provider's argv is checked by the managed-worker tests)
    options = {"labels": "", "labels_json": '{"zone": "eu,west", "k": "a=b"}'}
    assert labels_of(options) == {"zone": "eu,west", "k": "a=b"}
