"""The HTTP transport: the agent talks to the worker manager's agent protocol
(``/api/v1/agent/...`` on :8082) with its worker credential, and never to the database.
For agents anywhere: all they hold is a URL and a credential.

Plain Python (http.client, ssl): no Django, no settings, no third-party client.

- Registration: with a worker credential (``--token``, a managed worker's, or one kept in
  ``--credential-file``), or with a registration token, which buys a credential the
  agent keeps in memory (and in the credential file, mode 0600, if given). A stored
  credential that is refused falls back to the registration token.
- Claims are long-polls (the server answers as soon as work is queued, or after 30 s)
  made by a thread of their own, so the loop never waits on one: when an answer comes,
  the thread writes to a pipe the loop's selector watches (``fileno``/``wakeups``). At
  most one claim is in flight, for at most the free slots there were when it left; what
  it brings is handed over by the next ``claim()``.
- Everything else is a short request on one keep-alive connection of the loop's.
  Unreachable (refused, reset, timed out, 5xx): ``TransportError``; the loop keeps its
  commands running and their output buffered, and tries again; further calls fail at
  once for a growing pause instead of each waiting for a timeout. 401: ``Rejected``
  (the credential was revoked or the worker deleted): the agent stops."""

import http.client
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from agent.transport import Assignment, HeartbeatReply, Registration, Rejected, TransportError
from hodei import __version__

log = logging.getLogger("hodei.agent")

API = "/api/v1/agent"
FINISH_BATCH = 100  # reports per POST /finish (the server takes up to 100)
MAX_FINISH_CHUNKS = 10_000  # output chunks a finish may carry (as a POST /logs)
CLAIM_WAIT_SECONDS = 30.0  # what the server allows at most
REQUEST_TIMEOUT_SECONDS = 15.0
# A request body the server takes (its HODEI_MAX_BODY_BYTES is 1 MiB by default): log
# chunks go in batches of about this much JSON.
LOG_BATCH_BYTES = 256 * 1024
# After a failure, calls fail at once for this long (doubling, up to the most).
BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS = 0.25, 5.0


class CertificateProblem(TransportError):
    """The server's certificate could not be verified (--ca-file for a private CA)."""


class _Connection:
    """One keep-alive HTTP/1.1 connection to the server. Not thread-safe: the loop and
    the claim thread each have their own."""

    def __init__(self, transport: "HttpTransport"):
        self.transport = transport
        self.conn: http.client.HTTPConnection | None = None
        self.reused = False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        t = self.transport
        if t.scheme == "https":
            return http.client.HTTPSConnection(t.host, t.port, timeout=timeout, context=t.tls)
        return http.client.HTTPConnection(t.host, t.port, timeout=timeout)

    def _dropped(self) -> bool:
        """The server closed the idle connection (gunicorn keeps one alive for 2 s):
        readable while idle means EOF, so open another rather than fail on it."""
        sock = self.conn.sock if self.conn is not None else None
        if sock is None:
            return True
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def _exchange(self, path: str, payload: bytes, headers: dict, timeout: float):
        self.reused = self.conn is not None
        if self.conn is None:
            self.conn = self._open(timeout)
        self.conn.timeout = timeout
        if self.conn.sock is not None:
            self.conn.sock.settimeout(timeout)
        self.conn.request("POST", self.transport.path + path, body=payload, headers=headers)
        response = self.conn.getresponse()
        return response, response.read()

    def post(self, path: str, body: dict, *, token: str, timeout: float) -> tuple[int, dict]:
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"hodei-agent/{__version__}",
        }
        if self.conn is not None and self._dropped():
            self.close()
        try:
            try:
                response, raw = self._exchange(path, payload, headers, timeout)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if self.reused:
                    # The server closed the kept-alive connection as we sent: once more,
                    # on a new one. Everything the agent sends is safe to send twice (a
                    # claim whose answer was lost is found by the next heartbeats).
                    self.close()
                    response, raw = self._exchange(path, payload, headers, timeout)
                else:
                    raise
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise CertificateProblem(
                f"cannot verify the certificate of {self.transport.url}: {exc.verify_message} "
                "(give the private CA's certificate with --ca-file)"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError(f"{self.transport.url}: {exc.__class__.__name__}: {exc}") from exc
        if response.will_close:
            self.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"detail": raw[:200].decode(errors="replace")}
        return response.status, data if isinstance(data, dict) else {"detail": str(data)}


def _chunk_entries(chunks):
    """Each (execution id, chunk) as the logs and finish requests send it, with its size
    in the request."""
    for execution_id, chunk in chunks:
        entry = {
            "execution_id": execution_id,
            "seq": chunk.seq,
            "stream": chunk.stream,
            "message": chunk.message,
            "created_at": chunk.created_at,
        }
        yield entry, len(json.dumps(entry, ensure_ascii=False).encode())


def _recorded(result: dict, execution_id) -> bool:
    """Whether the server recorded a finish (one ignored had been settled meanwhile)."""
    if result.get("result") == "recorded":
        return True
    log.info(
        "finish of %s ignored: it had been settled meanwhile (%s)",
        execution_id,
        result.get("status"),
    )
    return False


class HttpTransport:
    cheap_claims = True  # claim() starts or extends a long-poll; it never waits

    def __init__(
        self,
        *,
        server_url: str,
        credential: str = "",
        registration_token: str = "",
        credential_file: str | None = None,
        ca_file: str | None = None,
        timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
        claim_wait_seconds: float = CLAIM_WAIT_SECONDS,
    ):
        parts = urlsplit(server_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the server URL must be http(s)://host[:port], got {server_url!r}")
        self.url = server_url.rstrip("/")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path.rstrip("/")
        self.tls = ssl.create_default_context(cafile=ca_file) if self.scheme == "https" else None
        self.credential = credential
        self.registration_token = registration_token
        self.credential_file = Path(credential_file) if credential_file else None
        if not self.credential and self.credential_file and self.credential_file.exists():
            self.credential = self.credential_file.read_text().strip()
        if not self.credential and not self.registration_token:
            raise ValueError(
                "no credential: give a worker credential (--token, HODEI_AGENT_TOKEN), a "
                "registration token (--registration-token, HODEI_REGISTRATION_TOKEN) or a "
                "--credential-file that holds one"
            )
        self.timeout_seconds = timeout_seconds
        self.claim_wait_seconds = claim_wait_seconds
        self.worker_id: str | None = None
        self._main = _Connection(self)
        self._failures = 0
        self._down_until = 0.0
        # The claim thread and what it hands over, under one lock.
        self._lock = threading.Condition()
        self._claim_limit = 0  # > 0: a claim is wanted or in flight
        self._claimed: list[Assignment] = []
        self._claim_error: Exception | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- requests --------------------------------------------------------------------

    def _post(self, path: str, body: dict, *, token: str | None = None) -> "_Reply":
        """POST on the loop's connection: the reply's body, or TransportError (try
        again later) or Rejected (401: this agent is refused for good)."""
        now = time.monotonic()
        if now < self._down_until:
            raise TransportError(f"{self.url} unreachable; trying again shortly")
        try:
            status, data = self._main.post(
                path, body, token=token or self.credential, timeout=self.timeout_seconds
            )
            _raise_for(status, data)
        except TooLarge:
            raise  # the server is there: the request was too big
        except TransportError:
            self._failures += 1
            pause = BACKOFF_FIRST_SECONDS * 2 ** (self._failures - 1)
            self._down_until = time.monotonic() + min(pause, BACKOFF_MAX_SECONDS)
            raise
        self._failures, self._down_until = 0, 0.0
        return _Reply(status, data)

    # -- the Transport protocol --------------------------------------------------------

    def register(self, *, type, name, labels, capacity, isolation) -> Registration:
        body = {
            "type": type,
            "name": name,
            "labels": labels,
            "capacity": capacity,
            "isolation": isolation,
            "hostname": socket.gethostname(),
            "version": __version__,
            "pid": os.getpid(),
        }
        try:
            reply = None
            if self.credential:
                try:
                    reply = self._post(f"{API}/register", body)
                except Rejected as exc:
                    if not self.registration_token:
                        raise
                    log.warning("the stored credential was refused (%s): registering anew", exc)
                    self.credential = ""
            if reply is None:
                reply = self._post(f"{API}/register", body, token=self.registration_token)
                self.credential = reply.data["credential"]
                self._keep_credential()
        except CertificateProblem as exc:
            # A configuration error, not an outage: say so rather than retry forever.
            raise Rejected(str(exc)) from exc
        self.worker_id = reply.data["worker_id"]
        return Registration(
            worker_id=self.worker_id,
            name=reply.data["name"],
            heartbeat_seconds=reply.data.get("heartbeat_seconds"),
        )

    def _keep_credential(self) -> None:
        """Write the credential to the credential file (mode 0600, replaced atomically),
        so that a restart registers with it instead of spending the token again."""
        if self.credential_file is None:
            return
        temporary = self.credential_file.with_name(f".{self.credential_file.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.credential + "\n")
        os.replace(temporary, self.credential_file)

    def heartbeat(self, *, running) -> HeartbeatReply:
        reply = self._post(f"{API}/heartbeat", {"running": list(running)})
        return HeartbeatReply(draining=bool(reply.data.get("draining")))

    def control(self, *, running) -> dict[str, str]:
        reply = self._post(f"{API}/control", {"running": list(running)})
        return dict(reply.data.get("control") or {})

    def store_logs(self, chunks) -> None:
        batch, size = [], 0
        for entry, entry_size in _chunk_entries(chunks):
            if batch and size + entry_size > LOG_BATCH_BYTES:
                self._store_batch(batch)
                batch, size = [], 0
            batch.append(entry)
            size += entry_size
        if batch:
            self._store_batch(batch)

    def _store_batch(self, batch: list[dict]) -> None:
        """Store one batch; the server skips chunks it has (same execution and seq), so a
        batch sent again after a lost reply never duplicates or reorders a line."""
        try:
            self._post(f"{API}/logs", {"chunks": batch})
        except TooLarge:
            if len(batch) == 1:
                log.error(
                    "an output chunk of %s was too large for the server; dropped",
                    batch[0]["execution_id"],
                )
                return
            half = len(batch) // 2
            self._store_batch(batch[:half])
            self._store_batch(batch[half:])
        except RequestRefused as exc:
            # Not this worker's execution (any more): nothing to retry.
            log.error("output refused by the server: %s", exc)

    def settle(self, *, execution_id, **report) -> bool:
        try:
            reply = self._post(f"{API}/executions/{execution_id}/finish", report)
        except (RequestRefused, NotFoundError) as exc:
            log.error("finish of %s refused by the server: %s", execution_id, exc)
            return False
        return _recorded(reply.data, execution_id)

    def settle_many(self, reports, *, free_after: int = 0, chunks=()) -> list[bool]:
        """Every run that ended in one turn of the loop, in one request (POST
        /finish), with their last output (``chunks``) when it fits one request (the
        server stores it first), else stored before. A TransportError leaves them all
        to the loop's next attempt: the server ignores a finish it has recorded already,
        and skips chunks it has. Refused as a whole (one of them is no longer this
        worker's): the output is stored as ``store_logs`` would and each run is reported
        alone, so the others are still recorded.

        The last request also claims for the slots ``free_after`` leaves that no
        long-poll in flight covers: what the server claims comes back with the results
        (one round trip where a finish and a long-poll took two) and is what the next
        ``claim`` returns. A lost answer loses those claims as a lost long-poll answer
        would: the heartbeat's orphan check has them retried."""
        recorded: list[bool] = []
        batches = [reports[i : i + FINISH_BATCH] for i in range(0, len(reports), FINISH_BATCH)]
        sized = list(_chunk_entries(chunks))
        entries = [entry for entry, _ in sized]
        if entries and (
            len(batches) > 1
            or len(entries) > MAX_FINISH_CHUNKS
            or sum(size for _, size in sized) > LOG_BATCH_BYTES
        ):
            self.store_logs(chunks)
            entries = []
        for number, batch in enumerate(batches, 1):
            claim = self._unclaimed(free_after) if number == len(batches) else 0
            recorded += self._finish(batch, entries=entries, chunks=chunks, claim=claim)
        return recorded

    def _finish(self, batch: list[dict], *, entries: list, chunks, claim: int) -> list[bool]:
        """One POST /finish. Too large for the server (413): the output apart first (as
        ``store_logs`` splits it), then the reports in halves, down to one each."""
        if len(batch) == 1 and not claim and not entries:
            return [self.settle(**batch[0])]
        body = {"reports": [{**r, "execution_id": str(r["execution_id"])} for r in batch]}
        if entries:
            body["chunks"] = entries
        if claim:
            body["claim"] = claim
        try:
            reply = self._post(f"{API}/finish", body)
        except TooLarge:
            if entries:
                self.store_logs(chunks)
                return self._finish(batch, entries=[], chunks=chunks, claim=claim)
            if len(batch) == 1:
                raise
            half = len(batch) // 2
            return self._finish(batch[:half], entries=[], chunks=chunks, claim=0) + self._finish(
                batch[half:], entries=[], chunks=chunks, claim=claim
            )
        except (RequestRefused, NotFoundError):
            if entries:
                self.store_logs(chunks)
            return [self.settle(**report) for report in batch]
        claimed = [Assignment.from_dict(row) for row in reply.data.get("executions", [])]
        if claimed:
            with self._lock:
                self._claimed.extend(claimed)
        return [_recorded(r, r.get("execution_id")) for r in reply.data.get("results", [])]

    def _unclaimed(self, free: int) -> int:
        """Of ``free`` slots, those neither a long-poll in flight nor claims not yet
        taken by the loop already cover."""
        with self._lock:
            if self._closed:
                return 0
            return max(0, free - self._claim_limit - len(self._claimed))

    def go_offline(self) -> None:
        self._post(f"{API}/offline", {})

    def claim(self, *, limit) -> list[Assignment]:
        """What the last long-poll brought, if anything (it is this agent's to run: the
        server claimed it), and start the next one for the slots left (unless one is in
        flight). Never waits: a long-poll's answer wakes the loop (``fileno``)."""
        with self._lock:
            if self._claim_error is not None:
                error, self._claim_error = self._claim_error, None
                raise error
            claimed, self._claimed = self._claimed, []
            # The next long-poll leaves at once, for the slots still free after these.
            wanted = limit - len(claimed)
            if wanted > 0 and not self._claim_limit and not self._closed:
                if time.monotonic() < self._down_until:
                    if claimed:
                        return claimed
                    raise TransportError(f"{self.url} unreachable; trying again shortly")
                self._claim_limit = wanted
                self._start_claimer()
                self._lock.notify()
        return claimed

    def _start_claimer(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._claim_loop, name="claim", daemon=True)
            self._thread.start()

    def _claim_loop(self) -> None:
        connection = _Connection(self)
        while True:
            with self._lock:
                while not self._claim_limit and not self._closed:
                    self._lock.wait()
                if self._closed:
                    connection.close()
                    return
                limit = self._claim_limit
            claimed, error = [], None
            try:
                status, data = connection.post(
                    f"{API}/claim",
                    {"limit": limit, "wait_seconds": self.claim_wait_seconds},
                    token=self.credential,
                    timeout=self.claim_wait_seconds + self.timeout_seconds,
                )
                _raise_for(status, data)
                claimed = [Assignment.from_dict(row) for row in data.get("executions", [])]
            except (TransportError, Rejected) as exc:
                error = exc
            with self._lock:
                self._claimed.extend(claimed)
                self._claim_error = error
                self._claim_limit = 0
            try:
                os.write(self._wake_w, b"w")
            except OSError:
                pass

    def fileno(self) -> int | None:
        return self._wake_r

    def wakeups(self) -> set[str]:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        return {"work"}

    def pass_on(self, *, backlog: bool = False) -> None:
        """Never asked first: the worker manager's long-polls take work as it comes."""

    def reset(self) -> None:
        self._main.close()

    def close(self) -> None:
        # A claim still in flight is left to end by itself (the thread is a daemon): the
        # server gives nothing to a worker that went offline, and whatever it gave just
        # before that was lost by go_offline and is retried elsewhere.
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._main.close()


class _Reply:
    def __init__(self, status: int, data: dict):
        self.status, self.data = status, data


class RequestRefused(Rejected):
    """403, or a 400 the server explains: not something trying again would change."""


class NotFoundError(Rejected):
    pass


class TooLarge(TransportError):
    pass


def _raise_for(status: int, data: dict) -> None:
    if status < 300:
        return
    detail = data.get("detail") or data.get("error") or f"HTTP {status}"
    fields = data.get("fields")
    if fields:
        detail = f"{detail} {fields}"
    if status == 401:
        raise Rejected(f"the control plane refused this agent: {detail}")
    if status in (400, 403, 409):
        raise RequestRefused(f"refused ({status}): {detail}")
    if status == 404:
        raise NotFoundError(
            f"not found ({status}): {detail}. Is the server URL the worker manager's (port 8082)?"
        )
    if status == 413:
        raise TooLarge(f"request too large: {detail}")
    raise TransportError(f"HTTP {status}: {detail}")
