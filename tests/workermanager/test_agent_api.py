"""The agent protocol over HTTP (/api/v1/agent/ on the worker manager): registration
tokens and worker credentials, what each may reach, long-poll claims, idempotent log
chunks and finishes. Real HTTP processes are in tests/agent/test_http_agent.py."""

import threading
import time
from datetime import timedelta

import pytest
import requests
from django.core.management import call_command

from accounts.models import hash_token, token_create
from accounts.roles import OPERATORS, VIEWERS
from hodei.lib import clock
from tests.conftest import ServiceClient
from tests.factories import (
    ExecutionFactory,
    JobFactory,
    UserFactory,
    WorkerFactory,
    action,
    admin_form_data,
    logged_in,
    messages_of,
    role_user,
    start,
)
from tests.processes import start_service, stop
from workermanager import agent_protocol, credentials
from workermanager.choices import ExecutionStatus, WorkerStatus
from workermanager.models import Execution, RegistrationToken, Worker, WorkerCredential
from workermanager.services import execution_enqueue

pytestmark = pytest.mark.django_db

API = "/api/v1/agent"


def agent_client(token: str | None = None) -> ServiceClient:
    client = ServiceClient("workermanager")
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def registration_token(**options) -> str:
    return credentials.registration_token_create(**options)[1]


def register(token: str, **body):
    return agent_client(token).post(
        f"{API}/register", {"type": "default", "capacity": 2, **body}, format="json"
    )


@pytest.fixture
def agent():
    """A registered HTTP agent: (its Worker, a client holding its credential)."""
    response = register(registration_token(), name="remote-1", labels={"zone": "a"})
    assert response.status_code == 201, response.content
    body = response.json()
    return Worker.objects.get(pk=body["worker_id"]), agent_client(body["credential"])


# -- registration ---------------------------------------------------------------------


def test_a_registration_token_registers_an_agent_and_buys_it_a_credential():
    raw = registration_token(worker_type="default", labels={"pool": "ci"}, uses=2)
    response = register(raw, name="remote-1", labels={"zone": "a", "pool": "mine"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "remote-1" and body["type"] == "default"
    assert body["credential"].startswith("hodei_wkr_")
    worker = Worker.objects.get(pk=body["worker_id"])
    assert worker.status == WorkerStatus.ONLINE and worker.capacity == 2
    assert worker.labels == {"zone": "a", "pool": "ci"}  # the operator's labels win
    credential = WorkerCredential.objects.get(worker=worker)
    # Stored hashed, recognisable by its prefix; never the raw secret.
    assert credential.key_hash == hash_token(body["credential"])
    assert body["credential"].startswith(credential.prefix)
    assert not WorkerCredential.objects.filter(key_hash=body["credential"]).exists()
    token = RegistrationToken.objects.get()
    assert token.uses_left == 1 and token.last_used_at is not None
    assert credential.registration_token == token


def test_registering_again_under_the_name_rotates_the_credential():
    raw = registration_token()
    first = register(raw, name="remote-1").json()["credential"]
    second = register(raw, name="remote-1").json()["credential"]
    assert first != second
    assert Worker.objects.filter(name="remote-1").count() == 1
    refused = agent_client(first).post(f"{API}/heartbeat", {}, format="json")
    assert refused.status_code == 401
    assert "replaced: the worker registered again" in refused.json()["detail"]
    assert agent_client(second).post(f"{API}/heartbeat", {}, format="json").status_code == 200


def _expired():
    token, raw = credentials.registration_token_create(lifetime=timedelta(hours=1))
    RegistrationToken.objects.filter(pk=token.pk).update(expires_at=clock.now())
    return raw


def _revoked():
    token, raw = credentials.registration_token_create()
    token.revoke(now=clock.now())
    return raw


def _used_up():
    raw = registration_token(uses=1)
    assert register(raw, name="first").status_code == 201
    return raw


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_expired, "expired at"),
        (_revoked, "was revoked"),
        (_used_up, "has no registrations left"),
        (lambda: "hodei_reg_" + "x" * 43, "Invalid registration token"),
    ],
    ids=["expired", "revoked", "used-up", "unknown"],
)
def test_unusable_registration_tokens_are_refused_saying_why(make, says):
    raw = make()
    before = Worker.objects.count()
    response = register(raw, name="refused")
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"
    assert says in response.json()["detail"]
    assert Worker.objects.count() == before


def test_a_token_for_one_worker_type_registers_no_other():
    raw = registration_token(worker_type="gpu")
    response = register(raw, type="default")
    assert response.status_code == 403
    assert "'gpu' only" in response.json()["detail"]
    assert register(raw, type="").json()["type"] == "gpu"  # the token's type by default


def test_a_token_takes_over_no_worker_of_another_type():
    Worker.objects.create(name="gpu-box", type="gpu")
    response = register(registration_token(worker_type="default"), name="gpu-box")
    assert response.status_code == 403
    assert "of another type exists" in response.json()["detail"]
    assert Worker.objects.get(name="gpu-box").type == "gpu"


def test_the_last_use_of_a_token_goes_to_exactly_one_of_racing_agents():
    token, _ = credentials.registration_token_create(uses=1)
    assert token.use(now=clock.now()) is True
    assert token.use(now=clock.now()) is False
    assert RegistrationToken.objects.get().uses_left == 0


def test_a_managed_workers_credential_registers_it_and_is_kept():
    worker, raw = credentials.worker_enroll(
        name="managed-default-1", type="default", labels={}, capacity=1
    )
    assert worker.status == WorkerStatus.OFFLINE
    response = register(raw, name="managed-default-1", capacity=3)
    assert response.status_code == 200, response.content
    assert "credential" not in response.json()
    worker.refresh_from_db()
    assert (worker.status, worker.capacity) == (WorkerStatus.ONLINE, 3)
    assert register(raw, name="another-name").status_code == 403  # its own worker only
    assert agent_client(raw).post(f"{API}/heartbeat", {}, format="json").status_code == 200


# -- who may call what ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["register", "heartbeat", "claim", "control", "logs", "offline"])
def test_a_users_api_token_is_refused_on_the_agent_endpoints(admin_user, path):
    _, raw = token_create(user=admin_user)  # a superuser's, even
    response = agent_client(raw).post(f"{API}/{path}", {"limit": 1}, format="json")
    assert response.status_code == 401, response.content
    assert agent_client().post(f"{API}/{path}", {}, format="json").status_code == 401


def test_a_worker_credential_is_refused_on_the_normal_api(agent):
    _, client = agent
    for path in ("/api/v1/executions", "/api/v1/workers"):
        assert client.get(path).status_code == 401, path
    assert client.post("/api/v1/execute", {"command": "id"}, format="json").status_code == 401


def test_a_registration_token_is_refused_beyond_register():
    raw = registration_token()
    response = agent_client(raw).post(f"{API}/heartbeat", {}, format="json")
    assert response.status_code == 401
    assert "only registers an agent" in response.json()["detail"]


def test_a_credential_reaches_only_its_own_workers_executions(agent):
    worker, client = agent
    other = Worker.objects.create(name="someone-else", type="default")
    theirs = start(ExecutionFactory(), worker=other, now=clock.now())
    mine = start(ExecutionFactory(), worker=worker, now=clock.now())
    chunk = {"seq": 0, "stream": "stdout", "message": "x\n", "created_at": time.time()}
    both = [{**chunk, "execution_id": str(mine.pk)}, {**chunk, "execution_id": str(theirs.pk)}]
    response = client.post(f"{API}/logs", {"chunks": both}, format="json")
    assert response.status_code == 403
    assert str(theirs.pk) in response.json()["detail"]
    assert not mine.logs.exists()  # nothing of a refused batch is stored

    finish = client.post(
        f"{API}/executions/{theirs.pk}/finish", {"status": "succeeded"}, format="json"
    )
    assert finish.status_code == 403
    theirs.refresh_from_db()
    assert theirs.status == ExecutionStatus.RUNNING


def test_a_credential_may_claim_while_valid_online_and_not_registered_again(agent):
    worker, _ = agent
    credential = WorkerCredential.objects.get(worker=worker, revoked_at__isnull=True)
    registered_at = worker.registered_at

    def may_claim() -> bool:
        return credentials.worker_credential_may_claim(credential, registered_at=registered_at)

    assert may_claim()
    Worker.objects.filter(pk=worker.pk).update(registered_at=registered_at + timedelta(seconds=1))
    assert not may_claim()  # its agent restarted and registered again
    Worker.objects.filter(pk=worker.pk).update(registered_at=registered_at)
    assert may_claim()
    Worker.objects.filter(pk=worker.pk).update(status=WorkerStatus.DRAINING)
    assert not may_claim()
    Worker.objects.filter(pk=worker.pk).update(status=WorkerStatus.ONLINE)
    credentials.worker_credential_revoke(worker=worker)
    assert not may_claim()


def test_a_revoked_credential_is_refused_saying_so(agent):
    worker, client = agent
    assert credentials.worker_credential_revoke(worker=worker)
    response = client.post(f"{API}/heartbeat", {}, format="json")
    assert response.status_code == 401
    assert "was revoked" in response.json()["detail"]
    assert "revoked by an operator" in response.json()["detail"]


def test_deleting_the_worker_invalidates_its_credential(agent):
    worker, client = agent
    worker.delete()
    response = client.post(f"{API}/heartbeat", {}, format="json")
    assert response.status_code == 401
    assert "Invalid worker credential" in response.json()["detail"]


# -- heartbeat, claim, control -------------------------------------------------------------


def test_heartbeat_says_whether_to_drain_and_what_to_kill(agent):
    worker, client = agent
    running = start(ExecutionFactory(), worker=worker, now=clock.now())
    Execution.objects.filter(pk=running.pk).update(cancel_requested=True)
    worker.drain()
    body = client.post(f"{API}/heartbeat", {"running": [str(running.pk)]}, format="json").json()
    assert body == {"draining": True, "control": {str(running.pk): "cancel"}}
    control = client.post(f"{API}/control", {"running": [str(running.pk)]}, format="json")
    assert control.json() == {"control": {str(running.pk): "cancel"}}


def test_claim_hands_over_everything_needed_secrets_included(agent):
    worker, client = agent
    job = JobFactory(command="echo $TOKEN", env={"A": "1"}, secret_env={"TOKEN": "s3cret-value"})
    queued = execution_enqueue(job=job, timeout_seconds=60)
    response = client.post(f"{API}/claim", {"limit": 2, "wait_seconds": 0}, format="json")
    assert response.status_code == 200, response.content
    (assignment,) = response.json()["executions"]
    assert assignment["id"] == str(queued.pk)
    assert assignment["command"] == "echo $TOKEN" and assignment["type"] == "bash"
    assert assignment["env"] == {"A": "1"} and assignment["secret_env"] == {"TOKEN": "s3cret-value"}
    assert (assignment["timeout_seconds"], assignment["attempt"]) == (60, 1)
    queued.refresh_from_db()
    assert queued.status == ExecutionStatus.RUNNING and queued.worker_id == worker.pk


def test_a_claim_with_nothing_queued_answers_empty_after_its_wait(agent):
    _, client = agent
    started = time.monotonic()
    response = client.post(f"{API}/claim", {"limit": 1, "wait_seconds": 0.3}, format="json")
    elapsed = time.monotonic() - started
    assert response.json() == {"executions": []}
    assert 0.3 <= elapsed < 3


def test_a_draining_or_offline_worker_claims_nothing(agent):
    worker, client = agent
    execution_enqueue(command="echo hi")
    worker.drain()
    assert client.post(f"{API}/claim", {"limit": 1, "wait_seconds": 0}, format="json").json() == {
        "executions": []
    }
    worker.undrain()
    client.post(f"{API}/offline", format="json")
    assert client.post(f"{API}/claim", {"limit": 1, "wait_seconds": 0}, format="json").json() == {
        "executions": []
    }
    assert Execution.objects.get().status == ExecutionStatus.QUEUED


def test_claims_beyond_the_long_poll_limit_answer_at_once(agent, settings, monkeypatch):
    _, client = agent
    settings.HODEI_AGENT_LONG_POLLS = 0
    monkeypatch.setattr(agent_protocol, "_long_polls", None)
    started = time.monotonic()
    response = client.post(f"{API}/claim", {"limit": 1, "wait_seconds": 5}, format="json")
    assert response.json() == {"executions": []}
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("body", [{}, {"limit": 0}, {"limit": 1, "wait_seconds": 31}])
def test_bad_claims_are_400(agent, body):
    _, client = agent
    assert client.post(f"{API}/claim", body, format="json").status_code == 400


# -- logs and finish -----------------------------------------------------------------------


def test_log_chunks_sent_again_are_never_duplicated_or_reordered(agent):
    worker, client = agent
    execution = start(ExecutionFactory(), worker=worker, now=clock.now())

    def chunks(*seqs):
        return {
            "chunks": [
                {
                    "execution_id": str(execution.pk),
                    "seq": seq,
                    "stream": "stdout",
                    "message": f"line {seq}\n",
                    "created_at": time.time(),
                }
                for seq in seqs
            ]
        }

    assert client.post(f"{API}/logs", chunks(0, 1), format="json").status_code == 200
    # The reply was lost: the agent sends the batch again, with what came since.
    assert client.post(f"{API}/logs", chunks(0, 1, 2), format="json").status_code == 200
    assert client.post(f"{API}/logs", chunks(2, 3), format="json").status_code == 200
    stored = list(execution.logs.order_by("seq").values_list("seq", "message"))
    assert stored == [(n, f"line {n}\n") for n in range(4)]


def test_finish_is_idempotent_and_a_finish_after_lost_is_ignored(agent):
    worker, client = agent
    execution = start(ExecutionFactory(), worker=worker, now=clock.now())
    url = f"{API}/executions/{execution.pk}/finish"
    body = {"status": "succeeded", "exit_code": 0, "log_bytes": 12, "outputs": {"V": "1"}}
    assert client.post(url, body, format="json").json() == {
        "result": "recorded",
        "status": "succeeded",
    }
    again = client.post(url, {**body, "status": "failed", "exit_code": 1}, format="json")
    assert again.json() == {"result": "ignored", "status": "succeeded"}
    execution.refresh_from_db()
    assert (execution.status, execution.exit_code, execution.outputs) == (
        "succeeded",
        0,
        {"V": "1"},
    )

    lost = start(ExecutionFactory(), worker=worker, now=clock.now())
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat_at=clock.now() - timedelta(hours=1))
    agent_protocol.workers.workers_reap()
    lost.refresh_from_db()
    assert lost.status == ExecutionStatus.LOST
    late = client.post(f"{API}/executions/{lost.pk}/finish", body, format="json")
    assert late.json() == {"result": "ignored", "status": "lost"}
    assert Execution.objects.filter(retry_of=lost).count() == 1  # retried, once


def test_runs_that_ended_together_are_finished_in_one_request(agent):
    worker, client = agent
    now = clock.now()
    ok, failed, lost = (start(ExecutionFactory(), worker=worker, now=now) for _ in range(3))
    Execution.objects.filter(pk=lost.pk).update(status=ExecutionStatus.LOST)
    reports = [
        {"execution_id": str(ok.pk), "status": "succeeded", "exit_code": 0, "outputs": {"A": "1"}},
        {"execution_id": str(failed.pk), "status": "failed", "exit_code": 2, "error": "x"},
        {"execution_id": str(lost.pk), "status": "succeeded", "exit_code": 0},
    ]
    response = client.post(f"{API}/finish", {"reports": reports}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "results": [
            {"execution_id": str(ok.pk), "result": "recorded", "status": "succeeded"},
            {"execution_id": str(failed.pk), "result": "recorded", "status": "failed"},
            {"execution_id": str(lost.pk), "result": "ignored", "status": "lost"},
        ]
    }
    ok.refresh_from_db()
    assert ok.outputs == {"A": "1"}
    # Sent again (the reply was lost): nothing changes.
    again = client.post(f"{API}/finish", {"reports": reports[:1]}, format="json").json()
    assert again["results"][0]["result"] == "ignored"


def test_a_finish_can_carry_the_next_claim(agent):
    worker, client = agent
    running = start(ExecutionFactory(), worker=worker, now=clock.now())
    queued = [execution_enqueue(command=f"echo {n}", type="bash") for n in range(3)]
    report = {"execution_id": str(running.pk), "status": "succeeded", "exit_code": 0}

    response = client.post(f"{API}/finish", {"reports": [report], "claim": 2}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["results"] == [
        {"execution_id": str(running.pk), "result": "recorded", "status": "succeeded"}
    ]
    assert [e["id"] for e in body["executions"]] == [str(e.pk) for e in queued[:2]]  # oldest
    assert body["executions"][0]["command"] == "echo 0"
    statuses = dict(
        Execution.objects.filter(pk__in=[e.pk for e in queued]).values_list("pk", "status")
    )
    assert [statuses[e.pk] for e in queued] == ["running", "running", "queued"]
    assert Execution.objects.filter(worker=worker, status="running").count() == 2

    # Without claim the answer is the results alone; a draining worker claims nothing.
    mine = Execution.objects.get(pk=queued[0].pk)
    report = {"execution_id": str(mine.pk), "status": "succeeded", "exit_code": 0}
    assert (
        "executions"
        not in client.post(f"{API}/finish", {"reports": [report]}, format="json").json()
    )
    Worker.objects.filter(pk=worker.pk).update(status=WorkerStatus.DRAINING)
    report = {"execution_id": str(queued[1].pk), "status": "succeeded", "exit_code": 0}
    drained = client.post(f"{API}/finish", {"reports": [report], "claim": 5}, format="json")
    assert drained.json()["executions"] == []
    assert Execution.objects.get(pk=queued[2].pk).status == ExecutionStatus.QUEUED

    bad = client.post(f"{API}/finish", {"reports": [report], "claim": -1}, format="json")
    assert bad.status_code == 400 and "claim" in bad.json()["fields"]


def test_a_finish_can_carry_the_runs_last_output(agent):
    worker, client = agent
    mine = start(ExecutionFactory(), worker=worker, now=clock.now())
    other = start(ExecutionFactory(), worker=WorkerFactory(), now=clock.now())

    def chunk(execution, seq):
        return {
            "execution_id": str(execution.pk),
            "seq": seq,
            "stream": "stdout",
            "message": f"line {seq}\n",
            "created_at": time.time(),
        }

    report = {"execution_id": str(mine.pk), "status": "succeeded", "exit_code": 0}
    # A chunk of another worker's execution: 403, nothing stored and nothing recorded.
    refused = {"reports": [report], "chunks": [chunk(mine, 0), chunk(other, 0)]}
    assert client.post(f"{API}/finish", refused, format="json").status_code == 403
    assert not mine.logs.exists() and not other.logs.exists()
    assert Execution.objects.get(pk=mine.pk).status == ExecutionStatus.RUNNING

    body = {"reports": [report], "chunks": [chunk(mine, 0), chunk(mine, 1)]}
    response = client.post(f"{API}/finish", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["result"] == "recorded"
    assert list(mine.logs.order_by("seq").values_list("message", flat=True)) == [
        "line 0\n",
        "line 1\n",
    ]
    # Sent again (the answer was lost): neither the output nor the outcome changes.
    again = client.post(f"{API}/finish", body, format="json").json()
    assert again["results"][0]["result"] == "ignored" and mine.logs.count() == 2


def test_a_finish_batch_with_another_workers_execution_records_none(agent):
    worker, client = agent
    mine = start(ExecutionFactory(), worker=worker, now=clock.now())
    other = start(ExecutionFactory(), worker=WorkerFactory(), now=clock.now())
    reports = [
        {"execution_id": str(e.pk), "status": "succeeded", "exit_code": 0} for e in (mine, other)
    ]
    assert client.post(f"{API}/finish", {"reports": reports}, format="json").status_code == 403
    assert set(Execution.objects.values_list("status", flat=True)) == {ExecutionStatus.RUNNING}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reports": []},
        {"reports": [{"execution_id": "not-a-uuid", "status": "succeeded"}]},
        {"reports": [{"execution_id": "00000000-0000-0000-0000-000000000001"}]},
        {"reports": [{"execution_id": "00000000-0000-0000-0000-000000000001", "status": "x"}]},
        {
            "reports": [
                {"execution_id": "00000000-0000-0000-0000-000000000001", "status": "failed"}
            ]
            * 101
        },
    ],
)
def test_bad_finish_batches_are_400(agent, body):
    _, client = agent
    response = client.post(f"{API}/finish", body, format="json")
    assert response.status_code == 400, response.content


def test_a_claim_whose_answer_never_arrived_is_lost_and_retried(agent):
    worker, client = agent
    orphan = start(ExecutionFactory(), worker=worker, now=clock.now() - timedelta(minutes=5))
    fresh = start(ExecutionFactory(), worker=worker, now=clock.now())
    kept = start(ExecutionFactory(), worker=worker, now=clock.now() - timedelta(minutes=5))
    client.post(f"{API}/heartbeat", {"running": [str(kept.pk)]}, format="json")
    statuses = dict(Execution.objects.filter(retry_of=None).values_list("pk", "status"))
    assert statuses[orphan.pk] == ExecutionStatus.LOST
    # Just claimed (its answer may be on its way), or one the agent says it runs: kept.
    assert statuses[fresh.pk] == statuses[kept.pk] == ExecutionStatus.RUNNING
    assert Execution.objects.filter(retry_of=orphan).exists()


def test_going_offline_loses_what_was_left_running(agent):
    worker, client = agent
    left = start(ExecutionFactory(), worker=worker, now=clock.now())
    assert client.post(f"{API}/offline", format="json").status_code == 204
    worker.refresh_from_db()
    left.refresh_from_db()
    assert worker.status == WorkerStatus.OFFLINE
    assert left.status == ExecutionStatus.LOST and "went offline" in left.error


def test_the_agent_endpoints_are_in_the_worker_managers_openapi_document():
    document = ServiceClient("workermanager").get("/openapi.json").json()
    for path in ("register", "heartbeat", "control", "claim", "logs", "offline"):
        assert f"{API}/{path}" in document["paths"], path
    finish = document["paths"][f"{API}/executions/{{execution_id}}/finish"]["post"]
    assert finish["security"] == [{"workerCredential": []}]
    register_op = document["paths"][f"{API}/register"]["post"]
    assert register_op["security"] == [{"registrationToken": []}]


# -- createregistrationtoken, the admin ----------------------------------------------------


def test_createregistrationtoken_prints_the_token_alone(capsys):
    call_command(
        "createregistrationtoken",
        "--type",
        "gpu",
        "--labels",
        "zone=eu,pool=ci",
        "--expires",
        "7d",
        "--uses",
        "3",
    )
    out, err = capsys.readouterr()
    raw = out.strip()
    token = RegistrationToken.objects.get(key_hash=hash_token(raw))
    assert (token.worker_type, token.labels, token.uses_left) == (
        "gpu",
        {"zone": "eu", "pool": "ci"},
        3,
    )
    assert timedelta(days=6) < token.expires_at - clock.now() <= timedelta(days=7)
    assert "agents of type 'gpu'" in err and "Shown once" in err
    assert register(raw, name="x", type="gpu").status_code == 201


@pytest.mark.parametrize(
    "args", [["--expires", "soon"], ["--uses", "0"], ["--labels", "novalue"], ["--type", "a b"]]
)
def test_createregistrationtoken_refuses_bad_options(args):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("createregistrationtoken", *args)
    assert not RegistrationToken.objects.exists()


TOKENS = "/admin/workermanager/registrationtoken/"
WORKERS = "/admin/workermanager/worker/"


def test_an_operator_makes_a_token_in_the_admin_and_sees_it_once():
    operator = logged_in(role_user(OPERATORS))
    page = operator.get(TOKENS + "add/")
    assert page.status_code == 200
    data = admin_form_data(
        page, name="ci pool", worker_type="default", labels='{"zone": "a"}', expires="2d", uses="5"
    )
    response = operator.post(TOKENS + "add/", data, follow=True)
    shown = [m for m in messages_of(response) if "shown this once" in m]
    assert len(shown) == 1, messages_of(response)
    raw = shown[0].split("copy it now): ")[1].split()[0]
    token = RegistrationToken.objects.get(key_hash=hash_token(raw))
    assert (token.name, token.uses_left, token.labels) == ("ci pool", 5, {"zone": "a"})
    assert token.created_by.groups.filter(name=OPERATORS).exists()
    detail = operator.get(f"{TOKENS}{token.pk}/change/").content.decode()
    assert token.prefix in detail and raw not in detail  # never shown again

    response = action(operator, TOKENS, "revoke_selected", [token])
    assert "Revoked 1 registration token(s)." in messages_of(response)
    assert register(raw, name="late").status_code == 401


def test_a_viewer_cannot_make_registration_tokens():
    viewer = logged_in(role_user(VIEWERS))
    assert viewer.get(TOKENS + "add/").status_code == 403
    plain = logged_in(UserFactory(is_staff=True))
    assert plain.get(TOKENS + "add/").status_code == 403


def test_revoking_a_workers_credential_in_the_admin(agent):
    worker, client = agent
    operator = logged_in(role_user(OPERATORS))
    page = operator.get(f"{WORKERS}{worker.pk}/change/").content.decode()
    assert "hodei_wkr_" in page and "last used" in page
    response = action(operator, WORKERS, "revoke_credential_selected", [worker])
    assert "Revoked 1 credential(s)." in messages_of(response)
    assert client.post(f"{API}/heartbeat", {}, format="json").status_code == 401
    again = action(operator, WORKERS, "revoke_credential_selected", [worker])
    assert "no valid credential" in " ".join(messages_of(again))


# -- the long-poll on PostgreSQL, over real HTTP -------------------------------------------


@pytest.fixture(scope="module")
def workermanager_service(child_env):
    # Polling every 5 s: an answer within a second can only come from the NOTIFY.
    env = {**child_env, "HODEI_POLL_SECONDS": "5"}
    proc, base = start_service(env, "workermanager", args=("--threads", "8"))
    yield base
    stop(proc)


def registered_over_http(base: str, name: str) -> dict:
    """A new agent registered through the real endpoint: its request headers."""
    registered = requests.post(
        f"{base}{API}/register",
        json={"type": "default", "name": name},
        headers={"Authorization": f"Bearer {registration_token()}"},
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    return {"Authorization": f"Bearer {registered.json()['credential']}"}


def long_poll_in_background(base: str, headers: dict, answers: list) -> threading.Thread:
    """A claim that waits up to 20 s, started in a thread: (when it answered, its body)
    goes to ``answers``."""

    def claim():
        response = requests.post(
            f"{base}{API}/claim",
            json={"limit": 1, "wait_seconds": 20},
            headers=headers,
            timeout=30,
        )
        answers.append((time.monotonic(), response.json()))

    waiting = threading.Thread(target=claim)
    waiting.start()
    return waiting


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_long_poll_claim_answers_as_soon_as_work_is_queued(workermanager_service):
    headers = registered_over_http(workermanager_service, "long-poller")
    answers = []
    waiting = long_poll_in_background(workermanager_service, headers, answers)
    time.sleep(1.5)  # the claim is waiting now, well past any poll it might do at first
    assert not answers
    queued_at = time.monotonic()
    execution = execution_enqueue(command="echo now")
    waiting.join(25)
    answered_at, body = answers[0]
    assert [e["id"] for e in body["executions"]] == [str(execution.pk)]
    latency = answered_at - queued_at
    assert latency < 1.0, latency
    print(f"long-poll dispatch latency: {latency * 1000:.0f} ms")

    started = time.monotonic()
    empty = requests.post(
        f"{workermanager_service}{API}/claim",
        json={"limit": 1, "wait_seconds": 0.5},
        headers=headers,
        timeout=10,
    )
    assert empty.json() == {"executions": []}
    assert 0.5 <= time.monotonic() - started < 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_long_poll_whose_credential_is_revoked_while_it_waits_claims_nothing(
    workermanager_service,
):
    headers = registered_over_http(workermanager_service, "revoked-poller")
    answers = []
    waiting = long_poll_in_background(workermanager_service, headers, answers)
    time.sleep(1.5)  # its first claim found nothing: it waits
    credentials.worker_credential_revoke(worker=Worker.objects.get(name="revoked-poller"))
    execution = execution_enqueue(command="echo not for you")  # wakes it
    waiting.join(25)
    assert [body for _, body in answers] == [{"executions": []}]
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.QUEUED
