"""bootstrap: the first run's admin account, and where everything is."""

import os
import pty
import stat
from io import StringIO
from pathlib import Path

from django.core.management import call_command

from accounts.models import ApiToken


def credentials(settings) -> dict:
    path = Path(settings.VAR_DIR) / "admin-credentials"
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_bootstrap_keeps_the_credentials_owner_only_and_prints_no_secret_to_a_log(
    db, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    out = StringIO()  # not a terminal: as when `make run` is piped into a log file
    call_command("bootstrap", stdout=out)
    creds = credentials(settings)
    path = tmp_path / "admin-credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ApiToken.objects.get().prefix == creds["token"][:12]
    text = out.getvalue()
    assert creds["password"] not in text and creds["token"] not in text
    assert str(path) in text


def test_bootstrap_shows_the_password_once_on_a_terminal(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    main, secondary = pty.openpty()
    with os.fdopen(secondary, "w") as terminal:
        call_command("bootstrap", stdout=terminal)
    shown = os.read(main, 65536).decode()
    os.close(main)
    assert credentials(settings)["password"] in shown


def test_bootstrap_prints_the_addresses_it_serves(db, settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("HODEI_ORCHESTRATOR_PORT", "18080")
    monkeypatch.setenv("HODEI_SCHEDULER_PORT", "18081")
    monkeypatch.setenv("HODEI_WORKERMANAGER_PORT", "18082")
    out = StringIO()
    call_command("bootstrap", stdout=out)
    call_command("bootstrap", stdout=out)  # the second run says where things are too
    text = out.getvalue()
    assert text.count("http://127.0.0.1:18080/admin/") == 2
    assert "http://127.0.0.1:18081" in text and "http://127.0.0.1:18082" in text
    assert ":8080" not in text.replace(":18080", "")
