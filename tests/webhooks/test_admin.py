"""The webhooks admin, driven through Django's test client: subscriptions with a
write-only secret, their deliveries and attempts, and the actions (send a test event,
enable/disable, redeliver) whose deliveries really arrive."""

import pytest

from events.relay import Relay
from events.services import event_emit
from hodei.lib import secrets as hodei_secrets
from tests.factories import action, admin_form_data, change_url, messages_of
from tests.webhooks.conftest import SECRET, settle
from webhooks import services
from webhooks.models import Delivery, Subscription

pytestmark = pytest.mark.django_db

SUBSCRIPTIONS = "/admin/webhooks/subscription/"
DELIVERIES = "/admin/webhooks/delivery/"


def subscribe(url="https://hooks.example.com/x", event_types=("*",), **fields) -> Subscription:
    return services.subscription_create(
        url=url, event_types=list(event_types), secret=SECRET, **fields
    )[0]


def test_adding_one_offers_a_generated_secret_shown_only_on_that_page(operator):
    page = operator.get(SUBSCRIPTIONS + "add/")
    assert page.status_code == 200
    offered = page.context["adminform"].form["secret"].value()
    assert len(offered) >= 32 and offered in page.content.decode()
    data = admin_form_data(
        page, url="https://hooks.example.com/new", event_types=["execution.*", "worker.lost"]
    )
    response = operator.post(SUBSCRIPTIONS + "add/", data, follow=True)
    assert response.status_code == 200, response.context["adminform"].form.errors
    subscription = Subscription.objects.get()
    assert subscription.signing_secret() == offered
    assert subscription.event_types == ["execution.*", "worker.lost"]
    html = operator.get(change_url(subscription)).content.decode()
    assert offered not in html and SECRET not in html


def test_adding_one_without_a_secret_is_refused(operator):
    # The offered secret cleared: a new one would be generated and never seen.
    page = operator.get(SUBSCRIPTIONS + "add/")
    data = admin_form_data(page, url="https://hooks.example.com/", event_types=["*"], secret="")
    response = operator.post(SUBSCRIPTIONS + "add/", data)
    assert "secret" in response.context["adminform"].form.errors
    assert not Subscription.objects.exists()


def test_the_change_page_keeps_the_secret_unless_a_new_one_is_typed(operator):
    subscription = subscribe()
    page = operator.get(change_url(subscription))
    assert SECRET not in page.content.decode()
    operator.post(change_url(subscription), admin_form_data(page, description="renamed"))
    subscription.refresh_from_db()
    assert subscription.description == "renamed" and subscription.signing_secret() == SECRET
    short = operator.post(change_url(subscription), admin_form_data(page, secret="short"))
    assert "16 characters" in str(short.context["adminform"].form.errors["secret"])
    new = "a-brand-new-secret-for-the-hook"
    operator.post(change_url(subscription), admin_form_data(page, secret=new))
    subscription.refresh_from_db()
    assert subscription.signing_secret() == new


def test_a_bad_url_is_refused_by_the_form(operator):
    page = operator.get(SUBSCRIPTIONS + "add/")
    data = admin_form_data(page, url="ftp://example.com/", event_types=["*"])
    response = operator.post(SUBSCRIPTIONS + "add/", data)
    assert "Must be an http:// or https:// URL." in str(response.context["adminform"].form.errors)
    assert not Subscription.objects.exists()


def test_the_list_shows_the_last_delivery_and_failures_of_the_day(operator, receiver, sender):
    hook = receiver(statuses=[500, 500])
    subscription = subscribe(url=hook.url)
    quiet = subscribe(description="quiet one", event_types=["pipeline_run.*"])
    event_emit("worker.online", subject=("worker", 1), ids={}, payload={})
    settle(sender, lambda: Delivery.objects.filter(status="succeeded").count() == 1)
    response = operator.get(SUBSCRIPTIONS)
    html = response.content.decode()
    rows = {s.pk: s for s in response.context["cl"].result_list}
    assert rows[subscription.pk].failure_count == 2 and rows[quiet.pk].failure_count == 0
    assert rows[subscription.pk].last_status == "succeeded"
    assert 'data-status="succeeded"' in html and "quiet one" in html
    assert SECRET not in html


def test_send_test_event_action_arrives(operator, receiver, sender):
    hook = receiver()
    subscription = subscribe(url=hook.url)
    response = action(operator, SUBSCRIPTIONS, "send_test", [subscription])
    assert any("Test event queued for 1" in m for m in messages_of(response))
    settle(sender, lambda: hook.count() == 1)
    [request] = hook.received
    assert request.headers["X-Hodei-Event"] == "webhook.test" and request.signed_with(SECRET)
    page = operator.get(change_url(subscription)).content.decode()
    assert "webhook.test" in page and 'data-status="succeeded"' in page  # the inline


def test_redeliver_action_arrives_with_the_same_id(operator, receiver, sender):
    hook = receiver()
    subscribe(url=hook.url)
    event = event_emit("worker.online", subject=("worker", 1), ids={}, payload={})
    delivery = settle(sender, lambda: Delivery.objects.filter(status="succeeded").first())
    response = action(operator, DELIVERIES, "redeliver_selected", [delivery])
    assert any("1 delivery(ies) queued again" in m for m in messages_of(response))
    settle(sender, lambda: hook.count() == 2)
    assert [r.headers["X-Hodei-Delivery"] for r in hook.received] == [str(event.pk)] * 2
    page = operator.get(change_url(delivery)).content.decode()
    assert "worker.online" in page and page.count("field-number") >= 2  # both attempts


def test_enable_and_disable_actions(operator):
    subscription = subscribe()
    action(operator, SUBSCRIPTIONS, "disable_selected", [subscription])
    subscription.refresh_from_db()
    assert not subscription.enabled
    response = action(operator, SUBSCRIPTIONS, "send_test", [subscription])
    assert any("disabled" in m for m in messages_of(response))  # nothing sent to it
    assert not Delivery.objects.exists()
    action(operator, SUBSCRIPTIONS, "enable_selected", [subscription])
    subscription.refresh_from_db()
    assert subscription.enabled


def test_viewers_see_but_do_not_act(viewer):
    subscription = subscribe()
    delivery = services.subscription_test(subscription=subscription)
    for url in (SUBSCRIPTIONS, DELIVERIES, change_url(subscription), change_url(delivery)):
        page = viewer.get(url)
        assert page.status_code == 200, url
        assert SECRET not in page.content.decode()
    assert 'name="action"' not in viewer.get(DELIVERIES).content.decode()
    action(viewer, SUBSCRIPTIONS, "send_test", [subscription])
    action(viewer, DELIVERIES, "redeliver_selected", [delivery])
    action(viewer, SUBSCRIPTIONS, "disable_selected", [subscription])
    subscription.refresh_from_db()
    assert subscription.enabled and Delivery.objects.count() == 1
    assert viewer.get(SUBSCRIPTIONS + "add/").status_code == 403


def test_deliveries_filter_by_status_subscription_and_type(operator):
    first, second = subscribe(), subscribe(url="https://other.example.com/")
    services.subscription_test(subscription=first)
    services.subscription_test(subscription=second)
    event_emit("worker.online", subject=("worker", 1), ids={}, payload={})
    Relay().dispatch()
    assert len(operator.get(DELIVERIES).context["cl"].result_list) == 4

    def listed(**query):
        return operator.get(DELIVERIES, query).context["cl"].result_list

    assert len(listed(subscription=str(first.pk))) == 2
    assert len(listed(type="webhook.test")) == 2
    assert len(listed(status__exact="pending")) == 4
    assert len(listed(status__exact="failed")) == 0


def test_the_mask_is_not_a_secret(operator):
    # The mask typed as a secret is refused (too short), never stored as one.
    subscription = subscribe()
    page = operator.get(change_url(subscription))
    operator.post(change_url(subscription), admin_form_data(page, secret=hodei_secrets.MASK))
    subscription.refresh_from_db()
    assert subscription.signing_secret() == SECRET
