"""/api/v1/webhooks on the orchestrator: CRUD with 400s naming the field, a write-only
secret (generated ones shown once), roles, pagination, test events and redelivery."""

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.roles import OPERATORS, VIEWERS
from events.relay import Relay
from events.services import event_emit
from hodei.lib import secrets as hodei_secrets
from tests.conftest import client_for
from tests.factories import JobFactory, PipelineFactory, ScheduleFactory, role_user
from tests.orchestrator.test_api import assert_field_error, links, walk_pages
from tests.webhooks.conftest import SECRET, settle
from webhooks import services
from webhooks.models import Delivery, Subscription

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks"


def create(client, **body):
    body = {"url": "https://hooks.example.com/hodei", "event_types": ["*"], **body}
    return client.post(URL, body, format="json")


def test_it_creates_reads_changes_and_deletes_a_subscription(orch):
    pipeline = PipelineFactory()
    response = create(
        orch,
        url="https://ci.example.com/hook?team=a",
        event_types=["execution.finished", "pipeline_run.*"],
        secret=SECRET,
        description="CI bot",
        pipeline_id=str(pipeline.pk),
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"] == hodei_secrets.MASK  # chosen by the caller: never echoed
    assert body["pipeline_id"] == str(pipeline.pk) and body["job_id"] is None
    assert body["enabled"] is True and body["description"] == "CI bot"
    url = f"{URL}/{body['id']}"
    assert orch.get(url).json() == body
    changed = orch.patch(url, {"enabled": False, "event_types": ["*"]}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["enabled"] is False and changed.json()["event_types"] == ["*"]
    # A body read with GET can be sent back (the mask keeps the secret).
    put = orch.put(url, changed.json(), format="json")
    assert put.status_code == 200, put.content
    assert Subscription.objects.get().signing_secret() == SECRET
    assert orch.delete(url).status_code == 204
    assert orch.get(url).status_code == 404


def test_a_generated_secret_is_shown_once(orch):
    response = create(orch)
    assert response.status_code == 201
    secret = response.json()["secret"]
    assert len(secret) >= 32 and secret != hodei_secrets.MASK
    subscription = Subscription.objects.get()
    assert subscription.signing_secret() == secret
    url = f"{URL}/{subscription.pk}"
    for response in (orch.get(url), orch.get(URL), orch.patch(url, {}, format="json")):
        assert secret not in response.content.decode()
    assert orch.get(url).json()["secret"] == hodei_secrets.MASK


def test_a_new_secret_can_be_set_and_is_never_returned(orch):
    subscription_id = create(orch, secret=SECRET).json()["id"]
    new = "another-long-secret-value-9876"
    response = orch.patch(f"{URL}/{subscription_id}", {"secret": new}, format="json")
    assert response.status_code == 200 and new not in response.content.decode()
    assert Subscription.objects.get().signing_secret() == new


@pytest.mark.parametrize(
    "field, value",
    [
        ("url", "ftp://example.com/hook"),
        ("url", "file:///etc/passwd"),
        ("url", "javascript:alert(1)"),
        ("url", "https://user:password@example.com/hook"),
        ("url", "http:///no-host"),
        ("url", "https://exa mple.com/"),
        ("url", "https://example.com:99999/"),
        ("url", ""),
        ("event_types", ["execution.exploded"]),
        ("event_types", ["nothing.*"]),
        ("event_types", ["webhook.test"]),  # sent by the test action alone
        ("event_types", []),
        ("event_types", "execution.finished"),
        ("secret", "too-short"),
        ("pipeline_id", "00000000-0000-0000-0000-000000000000"),
        ("job_id", "not-a-uuid"),
        ("enabled", "maybe"),
        ("timeout_second", 5),
    ],
)
def test_a_bad_field_is_a_400_naming_it(orch, field, value):
    assert_field_error(create(orch, **{field: value}), field)
    assert not Subscription.objects.exists()


def test_url_and_type_errors_say_what_is_allowed(orch):
    body = create(orch, url="ftp://example.com/").json()
    assert body["fields"]["url"] == ["Must be an http:// or https:// URL."]
    body = create(orch, event_types=["execution.exploded"]).json()
    assert "execution.*" in body["fields"]["event_types"][0]
    body = create(orch, secret="x" * 15).json()
    assert "16 characters" in body["fields"]["secret"][0]


@pytest.mark.parametrize(
    "url",
    ["http://receiver:8000/hook", "http://127.0.0.1:9000/", "https://[::1]:8443/x", "HTTPS://A.B"],
)
def test_receivers_on_any_host_name_are_accepted(orch, url):
    assert create(orch, url=url).status_code == 201


def test_filters_name_a_job_and_a_schedule(orch):
    job = JobFactory()
    schedule = ScheduleFactory(job=job)
    body = create(orch, job_id=str(job.pk), schedule_id=str(schedule.pk)).json()
    assert (body["job_id"], body["schedule_id"]) == (str(job.pk), str(schedule.pk))


def test_viewers_read_operators_change(db):
    subscription, _ = services.subscription_create(
        url="https://example.com/hook", event_types=["*"], secret=SECRET
    )
    viewer = client_for("orchestrator", role_user(VIEWERS))
    assert viewer.get(URL).status_code == 200
    assert viewer.get(f"{URL}/{subscription.pk}/deliveries").status_code == 200
    assert create(viewer).status_code == 403
    assert viewer.post(f"{URL}/{subscription.pk}/test").status_code == 403
    assert viewer.delete(f"{URL}/{subscription.pk}").status_code == 403
    delivery = services.subscription_test(subscription=subscription)
    assert viewer.post(f"{URL}/deliveries/{delivery.pk}/redeliver").status_code == 403
    operator = client_for("orchestrator", role_user(OPERATORS))
    assert create(operator).status_code == 201
    assert operator.post(f"{URL}/{subscription.pk}/test").status_code == 202
    assert operator.post(f"{URL}/deliveries/{delivery.pk}/redeliver").status_code == 200
    anonymous = client_for("orchestrator")
    assert anonymous.get(URL).status_code == 401


def test_lists_are_paged_with_link_headers(orch):
    for i in range(5):
        services.subscription_create(
            url=f"https://example.com/{i}", event_types=["*"], secret=SECRET
        )
    pages = walk_pages(orch, f"{URL}?limit=2")
    assert [len(p) for p in pages] == [2, 2, 1]
    urls = [s["url"] for page in pages for s in page]
    assert urls == [f"https://example.com/{i}" for i in reversed(range(5))]  # newest first
    response = orch.get(f"{URL}?limit=2")
    assert parse_qs(urlsplit(links(response)["next"]).query)["limit"] == ["2"]
    assert orch.get(f"{URL}?enabled=false").json() == []


def test_test_event_and_deliveries_with_attempts(orch, receiver, sender):
    hook = receiver(statuses=[500])
    subscription_id = create(orch, url=hook.url, secret=SECRET).json()["id"]
    response = orch.post(f"{URL}/{subscription_id}/test")
    assert response.status_code == 202, response.content
    queued = response.json()
    assert queued["status"] == "pending" and queued["event_type"] == "webhook.test"
    settle(sender, lambda: Delivery.objects.get().status == "succeeded")
    request = hook.wait_for(2)[-1]
    assert request.headers["X-Hodei-Event"] == "webhook.test"
    assert request.signed_with(SECRET)
    [delivery] = orch.get(f"{URL}/{subscription_id}/deliveries").json()
    assert delivery["id"] == queued["id"] and delivery["status"] == "succeeded"
    assert [(a["number"], a["status_code"], a["succeeded"]) for a in delivery["attempts"]] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert delivery["attempt_count"] == 2 and delivery["event_id"] == int(
        request.headers["X-Hodei-Delivery"]
    )


def test_redeliver_sends_it_again_with_the_same_id(orch, receiver, sender):
    hook = receiver()
    services.subscription_create(url=hook.url, event_types=["*"], secret=SECRET)
    event_emit("worker.online", subject=("worker", 1), ids={}, payload={})
    delivery = settle(sender, lambda: Delivery.objects.filter(status="succeeded").first())
    response = orch.post(f"{URL}/deliveries/{delivery.pk}/redeliver")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "pending"
    settle(sender, lambda: hook.count() == 2 and Delivery.objects.get().status == "succeeded")
    assert {r.headers["X-Hodei-Delivery"] for r in hook.received} == {str(delivery.event_id)}
    assert orch.post(f"{URL}/deliveries/999999/redeliver").status_code == 404


def test_disabled_subscriptions_answer_409_to_tests(orch):
    subscription_id = create(orch, enabled=False).json()["id"]
    response = orch.post(f"{URL}/{subscription_id}/test")
    assert response.status_code == 409 and response.json()["error"] == "conflict"


def test_the_deliveries_list_filters_and_costs_a_fixed_number_of_queries(orch):
    subscriptions = [
        services.subscription_create(
            url=f"https://example.com/{i}", event_types=["*"], secret=SECRET
        )[0]
        for i in range(3)
    ]
    for subscription in subscriptions:
        services.subscription_test(subscription=subscription)
    for _ in range(5):
        event_emit("worker.online", subject=("worker", 1), ids={}, payload={})
    while Relay().dispatch():  # deliveries made, none sent
        pass
    orch.get(f"{URL}/deliveries")  # the token's first use is recorded once
    with CaptureQueriesContext(connection) as few:
        assert len(orch.get(f"{URL}/deliveries?limit=3").json()) == 3
    with CaptureQueriesContext(connection) as many:
        assert len(orch.get(f"{URL}/deliveries").json()) == 18
    # The token and its user, the page with its events, the page's attempts.
    assert len(many) == len(few) == 3, [q["sql"][:60] for q in many]
    assert len(orch.get(f"{URL}/deliveries?type=webhook.test").json()) == 3
    one = subscriptions[0].pk
    assert len(orch.get(f"{URL}/deliveries?subscription_id={one}").json()) == 6
    assert orch.get(f"{URL}/deliveries?status=failed").json() == []
    assert_field_error(orch.get(f"{URL}/deliveries?status=bogus"), "status")
    assert orch.get(f"{URL}/deliveries/{Delivery.objects.first().pk}").status_code == 200


def test_nasty_ids_are_404(orch):
    for path in (f"{URL}/%00", f"{URL}/not-a-uuid/deliveries", f"{URL}/deliveries/abc"):
        assert orch.get(path).status_code == 404, path


def test_the_secret_never_reaches_the_logs(orch, caplog, receiver, sender):
    caplog.set_level(logging.DEBUG)
    hook = receiver()
    response = create(orch, url=hook.url, secret=SECRET)
    generated = create(orch, url=hook.url).json()["secret"]
    orch.patch(f"{URL}/{response.json()['id']}", {"secret": SECRET + "-new"}, format="json")
    orch.post(f"{URL}/{response.json()['id']}/test")
    settle(sender, lambda: hook.count() == 1)
    assert SECRET not in caplog.text and generated not in caplog.text


def test_the_schema_documents_the_webhook_paths(orch):
    schema = orch.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        URL,
        URL + "/{id}",
        URL + "/{id}/test",
        URL + "/{id}/deliveries",
        URL + "/deliveries",
        URL + "/deliveries/{id}/redeliver",
    ):
        assert path in paths, sorted(paths)
