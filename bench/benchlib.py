"""What the benchmarks share: the project's paths, a child environment pointing at a
benchmark database, and running `manage.py` there."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"


def hodei_env(database_url: str, **extra) -> dict:
    """This process's environment without Hodei, Django or libpq settings, pointed at
    ``database_url`` in development mode, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HODEI_", "DJANGO_", "PG")) and k != "DATABASE_URL"
    }
    env.update(DATABASE_URL=database_url, HODEI_DEV="1", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def manage(database_url: str, *args, **extra_env) -> str:
    out = subprocess.run(
        [str(VENV_PY), "manage.py", *map(str, args)],
        cwd=ROOT,
        env=hodei_env(database_url, **extra_env),
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"manage.py {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout
