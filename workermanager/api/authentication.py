"""How agents authenticate on ``/api/v1/agent/``: with their worker credential (every
endpoint) or a registration token (``register`` only). These are the only
authentication classes of those views, so a user's API token or session does not work
there; and the normal API's classes (accounts.authentication) know nothing of these
secrets, so a worker credential does not work anywhere else. Failed attempts count
towards the same per-address limit as failed API tokens."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.authentication import client_address, record_failure
from hodei.lib import clock
from workermanager import credentials
from workermanager.models import Worker


class Agent:
    """Who an agent request acts for (``request.user``): a worker, with no user
    permissions at all."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = is_superuser = False
    pk = id = None

    def __init__(self, worker: Worker | None = None):
        self.worker = worker
        self.username = f"worker:{worker.name}" if worker else "agent:registering"

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm, obj=None) -> bool:
        return False

    def has_perms(self, perms, obj=None) -> bool:
        return False

    def get_all_permissions(self, obj=None) -> set:
        return set()


def _bearer(request) -> str | None:
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != b"bearer":
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
    try:
        return header[1].decode("ascii")
    except UnicodeDecodeError:
        return ""


def _refused(request, exc: credentials.Refused):
    record_failure(client_address(request), now=clock.now())
    raise exceptions.AuthenticationFailed(exc.message)


class WorkerCredentialAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <worker credential>``: request.user is an ``Agent``,
    request.auth the WorkerCredential."""

    def authenticate(self, request):
        raw = _bearer(request)
        if raw is None:
            return None
        if raw.startswith(credentials.REGISTRATION_PREFIX):
            raise exceptions.AuthenticationFailed(
                "A registration token only registers an agent (POST /api/v1/agent/register)."
            )
        try:
            credential = credentials.worker_credential_find(raw, now=clock.now())
        except credentials.Refused as exc:
            _refused(request, exc)
        return Agent(credential.worker), credential

    def authenticate_header(self, request):
        return "Bearer"


class AgentRegistrationAuthentication(WorkerCredentialAuthentication):
    """``register`` takes a registration token (request.auth: the RegistrationToken),
    or the worker credential of an agent registering again (a managed worker's)."""

    def authenticate(self, request):
        raw = _bearer(request)
        if raw is None or not raw.startswith(credentials.REGISTRATION_PREFIX):
            return super().authenticate(request)
        try:
            token = credentials.registration_token_find(raw, now=clock.now())
        except credentials.Refused as exc:
            _refused(request, exc)
        return Agent(), token


class WorkerCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "workermanager.api.authentication.WorkerCredentialAuthentication"
    name = "workerCredential"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A worker credential (`hodei_wkr_...`): what an agent receives when it "
                "registers. Valid on the agent endpoints only, for its own worker's "
                "executions; a user's API token is refused here."
            ),
        }


class AgentRegistrationScheme(OpenApiAuthenticationExtension):
    target_class = "workermanager.api.authentication.AgentRegistrationAuthentication"
    name = "registrationToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A registration token (`hodei_reg_...`, `hodei createregistrationtoken`), "
                "or the worker credential of an agent registering again."
            ),
        }
