"""Production settings: HODEI_HTTPS=1 makes `check --deploy` clean; the admin and the
landing page carry a Content-Security-Policy."""

import base64
import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import ServiceClient
from tests.processes import ROOT


def production_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HODEI_DEV", "DEBUG")}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        HODEI_SECRETS_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        ALLOWED_HOSTS="hodei.example.com",
        HODEI_VAR_DIR=str(tmp_path),
        **extra,
    )
    return env


def check_deploy(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_check_deploy_is_clean_with_https_on(tmp_path):
    done = check_deploy(production_env(tmp_path, HODEI_HTTPS="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_without_it_check_deploy_names_what_is_missing(tmp_path):
    done = check_deploy(production_env(tmp_path))
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr + done.stdout


def test_https_settings(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **production_env(tmp_path, HODEI_HTTPS="1"),
            "DJANGO_SETTINGS_MODULE": "hodei.settings",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split()[:4] == ["True", "True", "True", "31536000"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/admin/login/"])
def test_pages_for_browsers_carry_a_content_security_policy(path):
    response = ServiceClient("orchestrator").get(path)
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
