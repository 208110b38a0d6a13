"""Who may be an agent over HTTP: registration tokens (what an operator hands to a new
machine) and worker credentials (what each registered agent then holds).

Both are bearer secrets made by ``accounts.models.new_token`` (256 random bits, stored as
SHA-256). A registration token is only good for ``POST /api/v1/agent/register``; the
credential it buys is only good on the other agent endpoints, and only for its own
worker's executions (workermanager.api.authentication). Neither works on the normal API,
and no user API token works on the agent endpoints."""

from datetime import datetime, timedelta

from django.db import connection, transaction
from rest_framework import status

from accounts.models import hash_token, new_token
from hodei.exceptions import HodeiError
from hodei.lib import clock, rows
from workermanager.choices import WorkerStatus
from workermanager.models import RegistrationToken, Worker, WorkerCredential

# Every secret of Hodei starts with "hodei_" (the log redaction looks for it); the rest
# tells a reader which kind it is.
REGISTRATION_PREFIX = "hodei_reg_"
CREDENTIAL_PREFIX = "hodei_wkr_"

# A credential's use is recorded at most this often: not one write per agent request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Refused(HodeiError):
    """A registration token or credential that cannot be used (401)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    code = "authentication_failed"


def registration_token_create(
    *,
    created_by=None,
    name: str = "",
    worker_type: str = "",
    labels: dict | None = None,
    lifetime: timedelta | None = None,
    uses: int | None = None,
) -> tuple[RegistrationToken, str]:
    """A new registration token; returns the row and the raw token (shown once)."""
    raw, prefix, key_hash = new_token(REGISTRATION_PREFIX)
    token = RegistrationToken(
        name=name,
        prefix=prefix,
        key_hash=key_hash,
        worker_type=worker_type,
        labels=labels or {},
        expires_at=clock.now() + lifetime if lifetime else None,
        uses_left=uses,
        created_by=created_by,
    )
    token.full_clean()
    token.save(force_insert=True)
    return token, raw


def registration_token_find(raw: str, *, now: datetime) -> RegistrationToken:
    """The usable registration token ``raw``, or Refused saying why not."""
    token = RegistrationToken.objects.filter(key_hash=hash_token(raw)).first()
    if token is None:
        raise Refused("Invalid registration token.")
    problem = token.problem(now=now)
    if problem:
        raise Refused(problem)
    return token


def worker_credential_find(raw: str, *, now: datetime) -> WorkerCredential:
    """The valid worker credential ``raw`` (with its worker), or Refused saying why not.
    Records its use (once a minute at most)."""
    # One prepared statement, not the ORM's join: every request of an HTTP agent starts
    # here (it is also the request's connection health check, hodei.lib.rows.execute).
    found = rows.fetch_joined(WorkerCredential, "worker", "t.key_hash = %s", [hash_token(raw)])
    credential = found[0] if found else None
    if credential is None:
        raise Refused(
            "Invalid worker credential (its worker may have been deleted): register the "
            "agent again with a registration token."
        )
    refusal = credential.refusal()
    if refusal:
        raise Refused(refusal)
    if credential.last_used_at is None or now - credential.last_used_at > LAST_USED_RESOLUTION:
        WorkerCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    return credential


def worker_credential_may_claim(credential: WorkerCredential, *, registered_at: datetime) -> bool:
    """Still valid, its worker online, and not registered again since ``registered_at``
    (a long-poll asks before each claim: a revoked credential, a worker drained or gone
    offline meanwhile, or one whose agent restarted, ends it; the claim of an agent
    process that is gone must not take work its successor would never see)."""
    # One prepared statement, not the ORM's join: a long-poll asks before each claim
    # after a wait, on the path from a NOTIFY to the agent's command.
    registered = Worker._meta.get_field("registered_at")
    found = rows.fetch_joined(
        WorkerCredential,
        "worker",
        "t.id = %s AND t.revoked_at IS NULL AND r.status = %s AND r.registered_at = %s",
        [
            WorkerCredential._meta.pk.get_db_prep_value(credential.pk, connection),
            WorkerStatus.ONLINE,
            registered.get_db_prep_value(registered_at, connection),
        ],
    )
    return bool(found)


@transaction.atomic
def worker_credential_issue(
    *, worker: Worker, registration_token: RegistrationToken | None = None
) -> str:
    """A new credential for ``worker``, replacing (revoking) the one it had: an agent
    that registers again under the name rotates it. Returns the raw credential."""
    now = clock.now()
    # Locked: two registrations of one name at once must not both keep a credential
    # (the partial unique index would refuse the second insert).
    Worker.objects.select_for_update().filter(pk=worker.pk).first()
    worker_credential_revoke(worker=worker, reason="replaced: the worker registered again")
    raw, prefix, key_hash = new_token(CREDENTIAL_PREFIX)
    WorkerCredential.objects.create(
        worker=worker,
        prefix=prefix,
        key_hash=key_hash,
        registration_token=registration_token,
        created_at=now,
    )
    return raw


def worker_credential_revoke(*, worker: Worker, reason: str = "revoked by an operator") -> bool:
    """Revoke ``worker``'s credential: its agent is refused from its next request on (it
    stops its commands and exits; the reaper then retries its executions elsewhere).
    False if it had none."""
    return bool(
        WorkerCredential.objects.filter(worker=worker, revoked_at__isnull=True).update(
            revoked_at=clock.now(), revoked_reason=reason[:200]
        )
    )


@transaction.atomic
def worker_enroll(*, name: str, type: str, labels: dict, capacity: int) -> tuple[Worker, str]:
    """The Worker row and a credential for an agent the control plane is about to start
    (a managed worker): the agent registers with the credential alone and never sees a
    registration token, the database or the secret key. The row stays offline until it
    does."""
    now = clock.now()
    worker, _ = Worker.objects.update_or_create(
        name=name,
        defaults={
            "type": type,
            "labels": labels,
            "capacity": capacity,
            "status": WorkerStatus.OFFLINE,
            "registered_at": now,
            "stopped_at": now,
        },
    )
    return worker, worker_credential_issue(worker=worker)
