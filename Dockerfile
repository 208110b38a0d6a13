# syntax=docker/dockerfile:1
# One image for every Hodei process: the three API services (gunicorn, HODEI_SERVICE
# picks the API), qcluster and the worker agent. compose.yaml sets each one's command.
# Not built or run on the development machines (no Docker engine there): see README.md.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    HODEI_VAR_DIR=/var/lib/hodei

# A non-root user; its home is the only writable place (var dir: logs, static files,
# managed agents' logs). The agent runs jobs with bash, sh and python3: all three come
# with the base image (Debian's bash is essential; the image installs python3).
# bubblewrap: the agent's sandbox for each command (docs/security.md).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 hodei \
    && useradd --system --uid 10001 --gid hodei --home-dir /var/lib/hodei \
        --shell /bin/bash hodei \
    && install -d -o hodei -g hodei -m 0750 /var/lib/hodei

WORKDIR /app

# Dependencies first, read from pyproject.toml, so that this layer is rebuilt only when
# they change and not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself (no dev extras). The processes run from /app (PYTHONPATH): settings
# find templates/, static/ and manage.py relative to the source tree.
COPY . .
RUN pip install . \
    && rm -rf build ./*.egg-info

USER hodei

# Static files into $HODEI_VAR_DIR/static. Settings need a SECRET_KEY: HODEI_DEV=1 gives
# this one command a development key; nothing it writes depends on the key.
RUN HODEI_DEV=1 python manage.py collectstatic --noinput -v 0

EXPOSE 8080 8081 8082

# Default: the orchestrator API. compose.yaml runs the other processes from this image.
CMD ["gunicorn", "hodei.wsgi", "-c", "hodei/gunicorn_conf.py", "--bind", "0.0.0.0:8080"]
