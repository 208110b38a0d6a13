"""Secret values in output, masked before they are stored: in plain form and the common
encodings, across chunk, flush and stream boundaries (agent.masking), with a real agent
running the attacker's commands. A safety net, not a boundary (docs/security.md)."""

import base64

import pytest

from agent.masking import HOLD_SECONDS, MASK, Masker
from tests.agent.conftest import drive, log_text
from tests.factories import JobFactory
from workermanager.services import execution_enqueue

SECRET = "hunter2-correct-horse"


def masked(pieces, *, secrets=(SECRET,)) -> str:
    masker = Masker(list(secrets))
    out = []
    for now, stream, text in pieces:
        out += masker.feed(stream, text, now=now)
    out += masker.flush()
    return "".join(text for _, text in out)


@pytest.mark.parametrize(
    "shown",
    [
        SECRET,
        SECRET[::-1],
        SECRET.encode().hex(),
        SECRET.encode().hex().upper(),
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(b"x" + SECRET.encode()).decode(),  # other alignments, inside
        base64.b64encode(b"xy" + SECRET.encode() + b"z").decode(),
        "\n".join(SECRET[i : i + 4] for i in range(0, len(SECRET), 4)),  # fold -w4
    ],
)
def test_the_masker_catches_each_form(shown):
    text = masked([(0, "stdout", f"before {shown} after\n")])
    assert SECRET not in text and shown not in text
    assert MASK in text and text.startswith("before ") and text.endswith(" after\n")


def test_halves_apart_in_time_and_across_streams_are_one_secret():
    half = len(SECRET) // 2
    text = masked([(0.0, "stdout", "a " + SECRET[:half]), (3.0, "stderr", SECRET[half:] + " b\n")])
    assert text == f"a {MASK} b\n"


def test_what_could_become_a_secret_is_held_until_it_cannot():
    masker = Masker([SECRET])
    assert masker.feed("stdout", "log line hunt", now=0) == [("stdout", "log line ")]
    assert masker.feed("stdout", "ing season\n", now=1) == [("stdout", "hunting season\n")]
    masker.feed("stdout", "hunter2-c", now=2)
    assert not masker.held_too_long(now=2 + HOLD_SECONDS - 1)
    assert masker.held_too_long(now=2 + HOLD_SECONDS)
    assert masker.flush() == [("stdout", "hunter2-c")]  # never became the secret


def test_innocent_output_passes_unchanged():
    text = "build 42 ok: 3 tests, 0 failures\n" * 100
    assert masked([(0, "stdout", text)]) == text


@pytest.fixture
def agent(make_agent):
    return make_agent()


def run_with_secret(agent, command: str):
    job = JobFactory(command=command, secret_env={"S": SECRET})
    execution = drive(agent, execution_enqueue(job=job), timeout=20)
    return execution, log_text(execution)


@pytest.mark.parametrize(
    "command",
    [
        'printf %s "$S" | base64',
        'printf %s "$S" | rev',
        'printf %s "$S" | xxd -p',
        'printf %s "$S" | od -An -tx1 | tr -d " \\n"',
        'printf %s "$S" | fold -w4',
        'printf %s "$S" | base64 | fold -w3',
        'echo "${S:0:9}"; sleep 1; echo "${S:9}"',
        'printf %s "${S:0:9}"; sleep 1; printf %s "${S:9}"',
        'printf %s "${S:0:9}"; printf %s "${S:9}" >&2',
        'printf "%s\\n" "$S"',
    ],
)
def test_an_agent_stores_no_secret_however_it_is_printed(agent, command):
    execution, text = run_with_secret(agent, command)
    assert execution.status == "succeeded", text
    joined = text.replace("\n", "").replace(" ", "")
    assert SECRET not in joined
    assert SECRET.encode().hex() not in joined.lower()
    assert base64.b64encode(SECRET.encode()).decode()[:20] not in joined
    assert SECRET[::-1] not in joined
    assert MASK in text, text


def test_short_secret_values_are_refused(orch):
    from orchestrator.models import Pipeline

    pipeline = Pipeline.objects.create(name="p")
    response = orch.post(
        "/api/v1/jobs",
        {"pipeline_id": str(pipeline.id), "secret_env": {"PIN": "1234"}},
        format="json",
    )
    assert response.status_code == 400
    assert "at least 8 characters" in response.json()["fields"]["secret_env"][0]
