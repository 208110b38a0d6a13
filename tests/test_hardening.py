"""Bad input never gives a 500: every write endpoint of the three services (managed
workers excepted) answers nasty bodies with a 400 (413 when oversized) in the one error
shape, naming the offending field; list endpoints do the same for nasty query strings."""

import json
import uuid

import pytest

from tests.conftest import ServiceClient, client_for
from tests.factories import ExecutionFactory, JobFactory, PipelineFactory, WorkerFactory

pytestmark = pytest.mark.django_db

LONG = "x" * 10000
MIB = 1024 * 1024


# -- endpoints ---------------------------------------------------------------------

# name: (service, method, path template, valid body template)
ENDPOINTS = {
    "pipeline-create": ("orchestrator", "POST", "/api/v1/pipelines", {"name": "p"}),
    "pipeline-put": ("orchestrator", "PUT", "/api/v1/pipelines/{pipeline}", {"name": "p"}),
    "pipeline-patch": ("orchestrator", "PATCH", "/api/v1/pipelines/{pipeline}", {}),
    "job-create": ("orchestrator", "POST", "/api/v1/jobs", {"pipeline_id": "{pipeline}"}),
    "job-put": ("orchestrator", "PUT", "/api/v1/jobs/{job}", {"pipeline_id": "{pipeline}"}),
    "job-patch": ("orchestrator", "PATCH", "/api/v1/jobs/{job}", {}),
    "schedule-create": (
        "scheduler",
        "POST",
        "/api/v1/schedule",
        {"job_id": "{job}", "cron": "* * * * *"},
    ),
    "worker-register": ("scheduler", "POST", "/api/v1/workers", {"type": "rust"}),
    "execute": ("workermanager", "POST", "/api/v1/execute", {"command": "true"}),
}

# Values of the wrong type or out of range, by the kind of field.
BAD = {
    "name": [LONG, "", "   ", None, [], {}, True, ["a"]],
    "text": [None, [], {}, True],
    "command": [None, [], {}, False],
    "choice": ["bogus", "", None, 1, [], {}, "ACTIVE", "active\n"],
    "uuid": ["not-a-uuid", "", None, 10**40, -1, 1.5, [], {}, str(uuid.uuid4())],
    "uuid-list": ["x", 5, {"a": 1}, [1.5], [None], ["nope"], [[]], [str(uuid.uuid4())]],
    "positive": ["abc", "", [], {}, True, 10**30, -1, 1.5, "1e400", -(10**30)],
    "timeout": ["abc", [], {}, 0, -5, 10**30, 1.5, 7 * 24 * 3600 + 1],
    "backoff": ["abc", "NaN", "Infinity", "-Infinity", [], {}, 0, -1, 10**30, 11, None],
    "bool": ["maybe", 2, -1, [], {}, None, 1.5],
    "object": ["a=b", [], 1, True, [["a", "b"]]],
    "string-map": [
        "a=b",
        [],
        1,
        None,
        {"k": 1},
        {"k": None},
        {"k": {}},
        {"k": ["v"]},
        {"k": True},
        {"x" * 201: "v"},
        {"k": LONG},
        {f"k{i}": "v" for i in range(201)},
    ],
    "env-map": [{"": "v"}, {"A B": "v"}, {"A=B": "v"}, {"1A": "v"}, {"A\n": "v"}, {"Ä": "v"}],
    "worker-type": [LONG, "has space", "-lead", "a/b", "a\u00e9", [], {}, True],
    "cron": [
        LONG,
        "not a cron",
        "* * *",
        "* * * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "0 0 30 2 *",
        "@reboot",
        "@every 5m",
        "H * * * *",
        "1,,2 * * * *",
        "\t",
        [],
        {},
        1,
        None,
    ],
    "timezone": [
        LONG,
        "Mars/Olympus",
        "../../../etc/passwd",
        "/etc/localtime",
        "utc ",
        "",
        [],
        None,
        1,
        "Europe/",
        "posixrules",
    ],
    "datetime": [
        "2026-13-45",
        "2026-13-45T00:00:00Z",
        "99999-01-01T00:00:00Z",
        "2026-01-01T25:00:00Z",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-23:59",
        "1969-12-31T23:59:59Z",
        "9500-01-01T00:00:00Z",
        "tomorrow",
        "",
        12345,
        1.5,
        [],
        {},
        True,
    ],
}

# The fields of each endpoint's body, by kind.
FIELDS = {
    "pipeline": {"name": "name", "description": "text", "status": "choice", "metadata": "object"},
    "job": {
        "pipeline_id": "uuid",
        "name": "name",
        "description": "text",
        "command": "command",
        "type": "choice",
        "worker_type": "worker-type",
        "labels": "string-map",
        "env": ["string-map", "env-map"],
        "secret_env": ["string-map", "env-map"],
        "timeout_seconds": "timeout",
        "max_retries": "positive",
        "retry_delay_seconds": "positive",
        "retry_backoff": "backoff",
        "max_lost_retries": "positive",
        "depends_on": "uuid-list",
    },
    "schedule": {
        "job_id": "uuid",
        "name": "name",
        "cron": "cron",
        "timezone": "timezone",
        "schedule_time": "datetime",
        "enabled": "bool",
        "overlap_policy": "choice",
        "misfire_policy": "choice",
    },
    "worker": {
        "name": "name",
        "type": "worker-type",
        "labels": "string-map",
        "capacity": "positive",
        "hostname": "name",
        "version": "name",
        "pid": "positive",
    },
    "execute": {
        "job_id": "uuid",
        "command": "command",
        "type": "choice",
        "worker_type": "worker-type",
        "env": ["string-map", "env-map"],
        "timeout_seconds": "timeout",
    },
}

# Values that are odd but legitimately accepted for a field (so not bad for it).
ACCEPTED = {
    # Names other than a pipeline's may be blank (a worker then gets a generated one).
    ("schedule", "name", ""),
    ("schedule", "name", "   "),
    ("worker", "name", ""),
    ("worker", "name", "   "),
    ("worker", "hostname", ""),
    ("worker", "hostname", "   "),
    ("worker", "version", ""),
    ("worker", "version", "   "),
    ("job", "name", ""),
    ("job", "name", "   "),
    # The execute body may name no job when it has a command; `null` means "no job".
    ("execute", "job_id", None),
    ("execute", "job_id", ""),
    ("job", "timeout_seconds", None),
}


def endpoint_kind(endpoint: str) -> str:
    return endpoint.split("-")[0]


def field_cases():
    for endpoint in ENDPOINTS:
        kind = endpoint_kind(endpoint)
        for field, kinds in FIELDS[kind].items():
            kinds = kinds if isinstance(kinds, list) else [kinds]
            for value_kind in kinds:
                for index, value in enumerate(BAD[value_kind]):
                    if _hashable(value) and (kind, field, value) in ACCEPTED:
                        continue
                    yield pytest.param(endpoint, field, value, id=f"{endpoint}-{field}-{index}")


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@pytest.fixture
def ctx(admin_user):
    pipeline = PipelineFactory()
    job = JobFactory(pipeline=pipeline)
    return {"pipeline": str(pipeline.id), "job": str(job.id)}


def resolve(endpoint: str, ctx: dict):
    service, method, path, body = ENDPOINTS[endpoint]
    body = {k: v.format(**ctx) if isinstance(v, str) else v for k, v in body.items()}
    return service, method, path.format(**ctx), body


def send(client: ServiceClient, method: str, path: str, raw: bytes, content_type: str):
    return client.generic(method, path, raw, content_type=content_type)


def assert_error_shape(response, status=400) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str), body
    return body


# -- bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint, field, value", list(field_cases()))
def test_a_bad_field_value_is_a_400_naming_the_field(admin_user, ctx, endpoint, field, value):
    service, method, path, body = resolve(endpoint, ctx)
    payload = {**body, field: value}
    response = client_for(service, admin_user).generic(
        method, path, json.dumps(payload), content_type="application/json"
    )
    body = assert_error_shape(response)
    assert body["error"] == "invalid"
    assert field in body["fields"], body
    assert all(isinstance(m, str) for msgs in body["fields"].values() for m in msgs)


NASTY_BODIES = {
    "truncated": b'{"name": ',
    "unquoted-keys": b"{name: 1}",
    "single-quotes": b"{'name': 'x'}",
    "trailing-garbage": b'{"name": "x"} extra',
    "two-documents": b'{"name": "x"}{"name": "y"}',
    "trailing-comma": b'{"name": "x",}',
    "bad-utf8": b'{"name": "\xff\xfe"}',
    "utf16": '{"name": "x"}'.encode("utf-16"),
    "bom": b'\xef\xbb\xbf{"name": "x"}',
    "array": b"[]",
    "array-of-object": b'[{"name": "x"}]',
    "string": b'"name"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "nan": b'{"name": NaN}',
    "infinity": b'{"timeout_seconds": Infinity, "name": "x"}',
    "minus-infinity": b'{"retry_backoff": -Infinity}',
    "nan-nested": b'{"metadata": {"a": [NaN]}, "labels": {"a": NaN}}',
    "float-overflow": b'{"metadata": {"a": 1e400}, "retry_backoff": 1e400, "capacity": 1e400}',
    "huge-int-literal": b'{"timeout_seconds": 1' + b"0" * 5000 + b"}",
    "nul-value": json.dumps({"name": "a\u0000b", "type": "a\u0000b"}).encode(),
    "nul-key": json.dumps({"name\u0000": "x"}).encode(),
    "nul-in-map-value": json.dumps({"labels": {"a": "\u0000"}, "env": {"A": "\u0000"}}).encode(),
    "nul-in-map-key": json.dumps({"labels": {"\u0000": "v"}, "env": {"A\u0000": "v"}}).encode(),
    "nul-in-metadata": json.dumps({"metadata": {"k\u0000": ["\u0000"]}}).encode(),
    "raw-nul-byte": b'{"name": "a\x00b"}',
    "lone-surrogate": b'{"name": "\\ud800", "type": "\\udfff"}',
    "deep-array": b"[" * 100000,
    "deep-object": b'{"a":' * 100000,
    "deep-closed": b"[" * 100000 + b"]" * 100000,
    "deep-in-field": b'{"metadata": {"a": ' + b"[" * 50000 + b"]" * 50000 + b"}}",
    "whitespace": b"   ",
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("nasty", list(NASTY_BODIES))
def test_a_nasty_body_is_a_400(admin_user, ctx, endpoint, nasty):
    service, method, path, _ = resolve(endpoint, ctx)
    raw = NASTY_BODIES[nasty]
    response = send(client_for(service, admin_user), method, path, raw, "application/json")
    assert_error_shape(response)


def nested_metadata(depth: int, container: str) -> str:
    if container == "array":
        nested = "[" * depth + "]" * depth
    else:
        nested = '{"a":' * depth + "1" + "}" * depth
    return '{"name": "deep", "metadata": {"x": ' + nested + "}}"


@pytest.mark.parametrize("depth", [10, 60])
@pytest.mark.parametrize("container", ["array", "object"])
def test_moderately_nested_metadata_is_kept(orch, depth, container):
    raw = nested_metadata(depth, container)
    response = orch.generic("POST", "/api/v1/pipelines", raw, content_type="application/json")
    assert response.status_code == 201, response.content[:300]
    stored = orch.get(f"/api/v1/pipelines/{response.json()['id']}").json()["metadata"]
    assert stored == json.loads(raw)["metadata"]


@pytest.mark.parametrize("depth", [70, 200, 900, 990, 1100, 3000])
@pytest.mark.parametrize("container", ["array", "object"])
def test_deeply_nested_metadata_is_a_400(orch, depth, container):
    raw = nested_metadata(depth, container)
    response = orch.generic("POST", "/api/v1/pipelines", raw, content_type="application/json")
    body = assert_error_shape(response)
    assert body["error"] == "parse_error"
    assert "nest" in body["detail"]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_an_oversized_body_is_a_413(admin_user, ctx, endpoint):
    service, method, path, body = resolve(endpoint, ctx)
    raw = json.dumps({**body, "name": "x" * (MIB + 1)}).encode()
    response = send(client_for(service, admin_user), method, path, raw, "application/json")
    body = assert_error_shape(response, status=413)
    assert body["error"] == "too_large"


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_body_just_under_the_limit_is_parsed(admin_user, ctx, endpoint):
    service, method, path, body = resolve(endpoint, ctx)
    # Whitespace is valid JSON: the body is big without an unknown field in it.
    raw = json.dumps(body).encode().ljust(MIB - 1000, b" ")
    response = send(client_for(service, admin_user), method, path, raw, "application/json")
    assert response.status_code in (200, 201), response.content[:300]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(
    "content_type, raw",
    [
        ("text/plain", b'{"name": "x"}'),
        ("application/x-www-form-urlencoded", b"name=x"),
        ("multipart/form-data; boundary=xyz", b"--xyz--"),
        ("application/xml", b"<name>x</name>"),
    ],
)
def test_a_body_that_is_not_json_is_a_415(admin_user, ctx, endpoint, content_type, raw):
    service, method, path, _ = resolve(endpoint, ctx)
    response = send(client_for(service, admin_user), method, path, raw, content_type)
    assert_error_shape(response, status=415)


# Actions that take no body ignore one, whatever it is.
@pytest.mark.parametrize("nasty", ["truncated", "deep-array", "nul-value", "nan"])
def test_bodyless_actions_ignore_nasty_bodies(admin_user, nasty):
    raw = NASTY_BODIES[nasty]
    worker = WorkerFactory()
    execution = ExecutionFactory()
    sched = client_for("scheduler", admin_user)
    wm = client_for("workermanager", admin_user)
    beat = send(sched, "POST", f"/api/v1/workers/{worker.id}/heartbeat", raw, "application/json")
    assert beat.status_code == 200, beat.content
    cancel = send(wm, "POST", f"/api/v1/executions/{execution.id}/cancel", raw, "application/json")
    assert cancel.status_code == 200, cancel.content
    assert cancel.json()["status"] == "cancelled"


# -- query strings -----------------------------------------------------------------

LISTS = [
    ("orchestrator", "/api/v1/pipelines", ["status"]),
    ("orchestrator", "/api/v1/jobs", ["status", "pipeline_id", "type"]),
    ("scheduler", "/api/v1/scheduled", ["status", "job_id"]),
    ("scheduler", "/api/v1/workers", ["status", "type"]),
    ("workermanager", "/api/v1/executions", ["status", "job_id", "type", "pipeline_id"]),
]

BAD_QUERY_VALUES = {
    "status": ["%00", "bogus", "ACTIVE", "%FF", "x" * 2000],
    "type": ["%00", "a%00b"],
    "pipeline_id": ["notauuid", "%00", "1", str(uuid.uuid4())[:-1]],
    "job_id": ["notauuid", "%00", "{}", "-1"],
    "limit": ["-1", "0", "abc", "%00", "1.5", "1e2", "99999999999999999999999999x"],
    "cursor": ["garbage", "%00", "cD0yMDI2", "cj14", "bz0tNQ==", "cD1ub3Q", "%FF%FE"],
}


def query_cases():
    for service, path, filters in LISTS:
        for param in [*filters, "limit", "cursor"]:
            for index, value in enumerate(BAD_QUERY_VALUES[param]):
                yield pytest.param(
                    service, path, param, value, id=f"{service}{path}-{param}-{index}"
                )


@pytest.mark.parametrize("service, path, param, value", list(query_cases()))
def test_a_bad_query_value_is_a_400_naming_it(admin_user, service, path, param, value):
    response = client_for(service, admin_user).get(f"{path}?{param}={value}")
    body = assert_error_shape(response)
    assert param in body["fields"], body


@pytest.mark.parametrize("service, path, _filters", LISTS)
def test_a_huge_limit_is_clamped_not_an_error(admin_user, service, path, _filters):
    response = client_for(service, admin_user).get(f"{path}?limit={10**30}")
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize("service, path, _filters", LISTS)
def test_unknown_query_parameters_are_ignored(admin_user, service, path, _filters):
    response = client_for(service, admin_user).get(f"{path}?bogus=%00&name[]=1")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "service, path",
    [
        ("orchestrator", "/api/v1/pipelines/%00"),
        ("orchestrator", "/api/v1/jobs/%00/status"),
        ("orchestrator", f"/api/v1/jobs/{'9' * 5000}"),
        ("scheduler", "/api/v1/scheduled/%FF"),
        ("scheduler", "/api/v1/workers/..%2F..%2Fetc"),
        ("workermanager", "/api/v1/executions/%00/logs"),
        ("workermanager", "/api/v1/executions/00000000-0000-0000-0000-000000000000"),
    ],
)
def test_nasty_ids_in_paths_are_404(admin_user, service, path):
    response = client_for(service, admin_user).get(path)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "query",
    ["offset=%00", "offset=-1", "offset=1e3", "limit=%00", "limit=-1", "offset=" + "9" * 50],
)
def test_bad_log_paging_is_a_400(wm, query):
    execution = ExecutionFactory()
    body = assert_error_shape(wm.get(f"/api/v1/executions/{execution.id}/logs?{query}"))
    assert query.split("=")[0] in body["fields"]
