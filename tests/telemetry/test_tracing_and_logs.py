"""Tracing (with the SDK's in-memory exporter: no collector is reachable here) and
structured, redacted logs."""

import json
import logging

import pytest
from django.db import connection
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry import tracing
from telemetry.logs import JsonFormatter, RedactingFilter, TextFormatter, redact, register_secret
from tests.agent.conftest import drive
from tests.conftest import client_for
from tests.factories import JobFactory, UserFactory
from workermanager.models import Execution

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans():
    # The SDK can be installed once per process; every test then reads what it exported.
    tracing.setup_tracing("test", exporter=EXPORTER)
    EXPORTER.clear()
    yield EXPORTER


def test_tracing_is_off_unless_otel_variables_ask(monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.tracing_requested()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.tracing_requested()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.tracing_requested()


def test_without_tracing_no_trace_id_is_stored(db):
    from workermanager.services import execution_enqueue

    if tracing._configured:
        pytest.skip("the SDK is installed in this process by another test")
    assert execution_enqueue(command="true").trace_id == ""


def test_an_executions_life_is_one_trace_with_its_id_stored(transactional_db, spans, make_agent):
    # A connection opened before the SDK was installed is not instrumented: start afresh,
    # as a real process (which installs the SDK first) does.
    connection.close()
    job = JobFactory(command="echo traced")
    client = client_for("workermanager", UserFactory(is_superuser=True))
    response = client.post("/api/v1/execute", {"job_id": str(job.id)}, format="json")
    assert response.status_code == 201
    execution = Execution.objects.get(pk=response.json()["id"])
    assert len(execution.trace_id) == 32
    drive(make_agent(), execution)

    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if format(s.context.trace_id, "032x") == execution.trace_id]
    names = {s.name for s in in_trace}
    assert {"execution.enqueue", "execution.claim", "execution.run", "execution.finish"} <= names
    # The HTTP request that queued it is the root, and database calls are traced.
    assert any(s.name.startswith("POST") for s in in_trace), names
    vendor = {"postgresql": "postgresql", "sqlite": "sqlite"}[connection.vendor]
    assert any(s.attributes.get("db.system") == vendor for s in in_trace), names
    run = next(s for s in in_trace if s.name == "execution.run")
    assert run.attributes["hodei.status"] == "succeeded"
    assert run.attributes["hodei.exit_code"] == 0


def test_a_pipeline_runs_trace_joins_its_executions(transactional_db, spans, make_agent):
    from pipelines import services
    from tests.factories import PipelineFactory
    from tests.pipelines.test_runs import run_until_done

    connection.close()
    pipeline = PipelineFactory()
    first = JobFactory(pipeline=pipeline, command="true")
    JobFactory(pipeline=pipeline, command="true").depends_on.set([first])
    run = run_until_done(make_agent(), services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "succeeded" and len(run.trace_id) == 32
    assert set(run.executions.values_list("trace_id", flat=True)) == {run.trace_id}
    in_trace = [
        s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == run.trace_id
    ]
    names = [s.name for s in in_trace]
    assert names.count("execution.run") == 2 and "pipeline_run.start" in names
    whole = next(s for s in in_trace if s.name == "pipeline_run")
    assert whole.attributes["hodei.status"] == "succeeded"


def record(message: str, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("hodei.agent", logging.INFO, __file__, 1, message, None, None)
    for name, value in extra.items():
        setattr(rec, name, value)
    return rec


def test_json_lines_carry_the_ids_as_fields():
    rec = record("execution started", execution_id="e1", job_id="j1", worker_id="w1")
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["message"] == "execution started"
    assert (entry["execution_id"], entry["job_id"], entry["worker_id"]) == ("e1", "j1", "w1")
    assert entry["level"] == "info" and entry["logger"] == "hodei.agent"


def test_text_lines_are_readable_and_carry_the_ids():
    formatter = TextFormatter("%(levelname)s %(message)s")
    assert formatter.format(record("hello", execution_id="e1")) == "INFO hello execution_id=e1"


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("token hodei_AbCdEfGhIjKlMnOpQrStUvWxYz0123 used", "hodei_AbCdEfGhIjKlMnOpQrStUvWxYz0123"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("connecting with password=hunter2hunter2", "hunter2hunter2"),
        ('{"api_key": "k-123456789"}', "k-123456789"),
    ],
)
def test_secrets_never_reach_the_log(message, secret):
    rec = record(message)
    RedactingFilter().filter(rec)
    assert secret not in JsonFormatter().format(rec)
    assert "********" in rec.getMessage()


def test_registered_secret_env_values_are_masked():
    register_secret("s3cr3t-from-env")
    assert redact("value is s3cr3t-from-env!") == "value is ********!"


def test_the_configured_handler_redacts(caplog, settings):
    handler = logging.getLogger().handlers[0]
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
