"""Job secret variables: encrypted at rest, write-only everywhere (the mask sent back
means "unchanged"), rotated with `hodei rotatesecrets`."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from hodei.lib import secrets
from orchestrator.models import Job
from tests.factories import (
    JobFactory,
    PipelineFactory,
    admin_form_data,
    change_url,
    stored_secrets,
)

pytestmark = pytest.mark.django_db
SECRET = "a-database-password-42"


def raw_secret_env(job) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_env FROM orchestrator_job WHERE id = %s", [job.pk.hex])
        row = cursor.fetchone()
        if row is None:  # PostgreSQL stores the UUID natively
            cursor.execute("SELECT secret_env FROM orchestrator_job WHERE id = %s", [job.pk])
            row = cursor.fetchone()
    return str(row[0])


def test_secret_values_are_stored_encrypted(orch):
    pipeline = PipelineFactory()
    response = orch.post(
        "/api/v1/jobs",
        {"pipeline_id": str(pipeline.id), "secret_env": {"DB_PASSWORD": SECRET}},
        format="json",
    )
    job = Job.objects.get(pk=response.json()["id"])
    raw = raw_secret_env(job)
    assert SECRET not in raw and "DB_PASSWORD" in raw
    assert secrets.is_encrypted(job.secret_env["DB_PASSWORD"])
    assert stored_secrets(job) == {"DB_PASSWORD": SECRET}


def test_a_get_then_put_of_the_same_body_keeps_the_secrets(orch):
    job = JobFactory(secret_env={"TOKEN": SECRET, "OTHER": "another-value"})
    body = orch.get(f"/api/v1/jobs/{job.id}").json()
    assert body["secret_env"] == {"TOKEN": "********", "OTHER": "********"}
    assert orch.put(f"/api/v1/jobs/{job.id}", body, format="json").status_code == 200
    assert stored_secrets(job) == {"TOKEN": SECRET, "OTHER": "another-value"}
    # The mask keeps one value, a new value replaces another, a name left out goes.
    changed = {"TOKEN": "********", "NEW": "a-new-secret-value"}
    orch.patch(f"/api/v1/jobs/{job.id}", {"secret_env": changed}, format="json")
    assert stored_secrets(job) == {"TOKEN": SECRET, "NEW": "a-new-secret-value"}


def test_the_mask_for_a_name_with_no_value_is_a_400(orch):
    job = JobFactory()
    response = orch.patch(
        f"/api/v1/jobs/{job.id}", {"secret_env": {"NEW": "********"}}, format="json"
    )
    assert response.status_code == 400
    assert "no stored value to keep" in response.json()["fields"]["secret_env"][0]


def test_rotatesecrets_re_encrypts_with_the_newest_key(settings):
    job = JobFactory(secret_env={"TOKEN": SECRET})
    old = list(settings.HODEI_SECRETS_KEYS)
    new = Fernet.generate_key().decode()
    settings.HODEI_SECRETS_KEYS = [new, *old]
    out = StringIO()
    call_command("rotatesecrets", stdout=out)
    assert "Re-encrypted 1 secret value(s)" in out.getvalue()
    settings.HODEI_SECRETS_KEYS = [new]  # the old key dropped: still readable
    assert stored_secrets(job) == {"TOKEN": SECRET}


def test_rotatesecrets_prints_a_new_key():
    out = StringIO()
    call_command("rotatesecrets", "--generate-key", stdout=out)
    Fernet(out.getvalue().strip().encode())  # a valid key


def test_the_admin_secret_field_is_write_only(operator):
    job = JobFactory(secret_env={"TOKEN": SECRET})
    page = operator.get(change_url(job))
    html = page.content.decode()
    assert SECRET not in html and "TOKEN=********" in html
    data = admin_form_data(page, secrets="TOKEN=********\nNEW=brand-new-secret")
    assert operator.post(change_url(job), data).status_code == 302
    assert stored_secrets(job) == {"TOKEN": SECRET, "NEW": "brand-new-secret"}
    short = admin_form_data(operator.get(change_url(job)), secrets="PIN=123")
    response = operator.post(change_url(job), short)
    assert response.status_code == 200
    assert "at least 8 characters" in str(response.context["adminform"].form.errors["secrets"])
    assert stored_secrets(job) == {"TOKEN": SECRET, "NEW": "brand-new-secret"}
