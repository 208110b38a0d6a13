"""Sessions and tokens under attack: login lockout (django-axes), throttled failed
tokens, token expiry."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import ApiToken, token_create
from hodei.lib import clock
from tests.conftest import ServiceClient
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "the-right-password-42"


def bearer(raw: str) -> ServiceClient:
    client = ServiceClient("orchestrator")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def login(client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "admin", "password": password})


def test_repeated_wrong_passwords_lock_the_login_out_even_for_the_right_one(client, settings):
    user = UserFactory(username="admin", is_staff=True, is_superuser=True)
    user.set_password(PASSWORD)
    user.save()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "wrong").status_code == 200  # the form again
    assert login(client, "wrong").status_code == 429  # locked out from here on
    locked = login(client, PASSWORD)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_right_password_before_the_limit_works(client):
    user = UserFactory(username="admin", is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302


def test_failed_tokens_are_throttled_per_address(settings):
    settings.HODEI_TOKEN_FAILURE_LIMIT = 3
    for _ in range(3):
        assert bearer("hodei_not-a-token").get("/api/v1/jobs").status_code == 401
    throttled = bearer("hodei_not-a-token").get("/api/v1/jobs")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert throttled.json()["error"] == "throttled"


def test_an_expired_token_is_refused_with_a_clear_message():
    user = UserFactory(is_superuser=True)
    token, raw = token_create(user=user, lifetime=timedelta(days=1))
    assert bearer(raw).get("/api/v1/jobs").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=clock.now() - timedelta(seconds=1))
    response = bearer(raw).get("/api/v1/jobs")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_createtoken_expires_and_the_admin_shows_it(operator):
    out, err = StringIO(), StringIO()
    call_command(
        "createtoken", "ci", "--role", "viewer", "--expires", "90d", stdout=out, stderr=err
    )
    token = ApiToken.objects.get(user__username="ci")
    assert timedelta(days=89) < token.expires_at - clock.now() <= timedelta(days=90)
    assert "expires at" in err.getvalue()
    with pytest.raises(Exception, match="--expires"):
        call_command("createtoken", "ci", "--expires", "soon", stdout=out, stderr=err)


def test_last_use_is_recorded():
    token, raw = token_create(user=UserFactory(is_superuser=True))
    assert token.last_used_at is None
    bearer(raw).get("/api/v1/jobs")
    token.refresh_from_db()
    assert token.last_used_at is not None
