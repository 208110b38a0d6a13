"""What the benchmarks share: the project's paths and venv, their own PostgreSQL
databases, a child environment pointing at one and `manage.py` run there, Django in
process, child processes with their output in var/bench-logs/, CPU figures of the machine
and of processes, percentiles, raw figures in var/bench-results/, and seeding with COPY
(`Seeder`)."""

import functools
import http.client
import json
import os
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
LOG_DIR = ROOT / "var" / "bench-logs"
RESULTS_DIR = ROOT / "var" / "bench-results"
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_in_project_venv() -> None:
    """Re-execute the running script under the project's .venv, unless it runs there."""
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    if not VENV_PY.exists():
        sys.exit(f"{VENV_PY} not found: run `make install` first")
    os.execv(VENV_PY, [str(VENV_PY), str(Path(sys.argv[0]).resolve()), *sys.argv[1:]])


# -- PostgreSQL, manage.py, Django ----------------------------------------------------------


def db_url(name: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def connect(dbname: str = "postgres", autocommit: bool = True):
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=autocommit
    )


def recreate_database(name: str, *, template: str | None = None, migrate: bool = False) -> str:
    """Drop and create the database ``name`` (from ``template`` if given; migrated if
    asked) and return its URL. Only ever a benchmark's own database: FORCE ends the
    sessions on it."""
    assert name.startswith("hodei_bench"), name
    with connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    url = db_url(name)
    if migrate:
        t0 = time.perf_counter()
        manage(url, "migrate", "--no-input", "-v", "0")
        say(f"{name} migrated in {time.perf_counter() - t0:.1f} s")
    return url


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
        raise RuntimeError(f"manage.py {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def setup_django(database_url: str | None = None, **defaults) -> None:
    """Django in this process (development settings), on ``database_url`` or the
    environment's; ``defaults`` for environment variables that are not set."""
    if database_url:
        os.environ.update(DATABASE_URL=database_url, HODEI_DEV="1")
    for key, value in {"DJANGO_SETTINGS_MODULE": "hodei.settings", **defaults}.items():
        os.environ.setdefault(key, str(value))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# -- processes --------------------------------------------------------------------------------

PROCS: list["Proc"] = []


class Proc:
    """A child process whose output (stdout and stderr) is appended to
    var/bench-logs/NAME.log. With a ``marker``, the output goes through a reader thread
    that notes when the marker first appears (the process is ready) and the process's
    CPU time then. With ``new_session``, it runs in a session (and process group) of its
    own, and signals go to the group."""

    def __init__(
        self, name: str, args: list, env: dict, marker: str | None = None, new_session=False
    ):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.new_session = new_session
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self._log_start = self._log.tell()
        self.marker = marker.encode() if marker else None
        self.ready = threading.Event()
        self.ready_at: float | None = None
        self.cpu_at_ready: tuple[float, float] | None = None
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            [str(a) for a in args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.marker else self._log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
        PROCS.append(self)
        self._thread = None
        if self.marker:
            self._thread = threading.Thread(target=self._pump, daemon=True)
            self._thread.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        for line in self.popen.stdout:
            if not self.ready.is_set() and self.marker in line:
                self.ready_at = time.monotonic()
                self.cpu_at_ready = proc_cpu(self.pid)
                self.ready.set()
            self._log.write(line)
            self._log.flush()

    def output(self) -> str:
        """What it has written so far (since it started)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not become ready:\n{self.output()[-2000:]}")

    def cpu(self) -> tuple[float, float] | None:
        return proc_cpu(self.pid)

    def signal(self, sig: int) -> None:
        try:
            if self.new_session:
                os.killpg(self.pid, sig)
            else:
                self.popen.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, SIGKILL after ``grace`` seconds; then forget it."""
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"{self.name} ignored SIGTERM for {grace} s: SIGKILL")
                self.signal(signal.SIGKILL)
                self.popen.wait()
        if self._thread:
            self._thread.join(5)
        self._log.close()
        if self in PROCS:
            PROCS.remove(self)


def stop_all() -> None:
    for proc in reversed(list(PROCS)):
        try:
            proc.stop()
        except Exception as exc:  # keep stopping the others
            say(f"could not stop {proc.name}: {exc}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_api(name: str, database_url: str, timeout: float = 30.0) -> tuple[Proc, int]:
    """The worker manager's API under gunicorn (access log off) on a free port, once its
    /health answers."""
    port = free_port()
    api = Proc(
        name,
        [
            ROOT / ".venv" / "bin" / "gunicorn",
            "hodei.wsgi",
            "-c",
            "hodei/gunicorn_conf.py",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        hodei_env(database_url, HODEI_SERVICE="workermanager", HODEI_ACCESS_LOG="0"),
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return api, port
        except OSError:
            pass
        if api.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start:\n{api.output()[-2000:]}")
        time.sleep(0.1)


# -- CPU and statistics -----------------------------------------------------------------------


def proc_cpu(pid: int) -> tuple[float, float] | None:
    """(own CPU seconds, CPU seconds of waited-for children) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (gunicorn's master and workers)."""
    total = (proc_cpu(pid) or (0.0, 0.0))[0]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    return total + sum(tree_cpu(c) for c in children)


def backend_cpus(conn, dbname: str) -> dict[int, float]:
    """CPU seconds used so far by each server process of the other sessions on dbname."""
    pids = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        [dbname],
    ).fetchall()
    return {pid: (proc_cpu(pid) or (0.0, 0.0))[0] for (pid,) in pids}


class CpuTimes(NamedTuple):
    busy: int
    total: int
    iowait: int


def machine_cpu() -> CpuTimes:
    """Busy, total and iowait jiffies of the whole machine so far."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return CpuTimes(sum(values) - idle, sum(values), values[4])


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def code_state() -> dict:
    """The commit measured and `git status --porcelain` of the files changed on top of
    it (read-only git calls)."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout

    return {
        "head": git("rev-parse", "HEAD").strip(),
        "changed": git("status", "--porcelain").splitlines(),
    }


def save_results(kind: str, data) -> Path:
    """Raw figures as var/bench-results/KIND-<time>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(data, indent=2, default=str))
    return out


# -- seeding with COPY ------------------------------------------------------------------------

NULL = r"\N"  # COPY text format
EXECUTION_TABLES = ("workermanager_execution", "workermanager_executionlog")


def copy_text(value) -> str:
    """A value as COPY's text format spells it."""
    from psycopg.types.json import Json, Jsonb

    if value is None:
        return NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, Json | Jsonb):
        value = json.dumps(value.obj)
    elif isinstance(value, datetime):
        value = value.isoformat()
    text = str(value)
    for char, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        text = text.replace(char, escaped)
    return text


@functools.cache
def _copy_minute(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d %H:%M")


def copy_ts(us: int) -> str:
    """Epoch microseconds as COPY text ('YYYY-MM-DD HH:MM:SS.ffffff+00'), fast."""
    sec, frac = divmod(us, 1_000_000)
    minute, sec = divmod(sec, 60)
    return f"{_copy_minute(minute)}:{sec:02d}.{frac:06d}+00"


def spread(count: int, start: int, end: int, rng: random.Random | None = None) -> list[int]:
    """``count`` instants in [start, end): evenly spaced, or with ``rng`` uniformly at
    random (sorted)."""
    if rng is not None:
        return sorted(rng.randrange(start, end) for _ in range(count))
    step = (end - start) / max(count, 1)
    return [start + int(i * step) for i in range(count)]


class Seeder:
    """Rows into a benchmark database with COPY, in one transaction.

    ``add(Model, column=value, ...)`` writes a row of any model: the columns given, every
    other one from the model's field default (so a column added later needs no change
    here). Values are written as str() spells them, None as NULL: escape free text with
    copy_text(). ``execution(...)`` writes an execution and its log chunks, ``logs(...)``
    log chunks alone. Rows are formatted in the caller's thread and sent by a writer
    thread meanwhile, table by table in the order they were first written to (so a row's
    references are in before it); ``sync()`` waits until all are in.

    While it is open the ``deferred`` tables have no secondary indexes, unique or foreign
    key constraints; closing recreates them as migrate made them (pg_get_indexdef,
    pg_get_constraintdef): a sorted build each instead of an index insertion and a key
    check per row. With ``freeze`` the deferred tables are emptied first and loaded
    ``WITH (FREEZE)``. ``rng`` makes the ids (and so a whole seeding) repeatable."""

    CHUNK = 20_000

    def __init__(
        self,
        dbname: str,
        *,
        deferred: tuple[str, ...] = EXECUTION_TABLES,
        freeze: bool = False,
        rng: random.Random | None = None,
        now_us: int | None = None,
    ):
        from workermanager.models import Execution, ExecutionLog

        self.models = Execution, ExecutionLog
        self.rng = rng or random.Random()
        self.now_us = time.time_ns() // 1000 if now_us is None else now_us
        self.ts = copy_ts
        self.rows: Counter = Counter()  # table -> rows sent
        self.rebuild_seconds = 0.0
        self._frozen = set(deferred) if freeze else set()
        self._copies: dict[tuple, list] = {}  # (model, columns) -> [table, sql, format, lines]
        self._closed = False
        self._error: BaseException | None = None
        self.conn = connect(dbname, autocommit=False)
        self.conn.execute("SET synchronous_commit = off")  # seeding: a crash loses nothing
        self.conn.execute("SET maintenance_work_mem = '512MB'")
        if freeze:
            self.conn.execute(f"TRUNCATE {', '.join(deferred)} CASCADE")
        self._constraints = self.conn.execute(
            "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype IN ('f', 'u') AND conrelid::regclass::text = ANY(%s)",
            [list(deferred)],
        ).fetchall()
        self._indexes = self.conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i "
            "WHERE indrelid::regclass::text = ANY(%s) AND NOT indisprimary AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            [list(deferred)],
        ).fetchall()
        for table, name, _, _ in sorted(self._constraints, key=lambda c: c[2] != "f"):
            self.conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')  # FKs first
        for name, _ in self._indexes:
            self.conn.execute(f"DROP INDEX {name}")
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._writer.start()

    def __enter__(self) -> "Seeder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self._closed = True
            self._queue.put(None)
            self._writer.join()
            self.conn.rollback()
            self.conn.close()

    def new_id(self, us: int) -> str:
        """A UUIDv7 of the microsecond ``us`` (its sub-millisecond part in rand_a), so
        that ids sort as their times do, as hodei.lib.ids makes them."""
        value = (us // 1000) << 80 | 0x7 << 76 | ((us % 1000) * 4) << 64 | 0b10 << 62
        return f"{value | self.rng.getrandbits(62):032x}"

    def add(self, model, **columns) -> None:
        key = (model, tuple(columns))
        copy = self._copies.get(key) or self._copy(model, key[1])
        copy[3].append(copy[2].format(*[NULL if v is None else v for v in columns.values()]))
        if len(copy[3]) >= self.CHUNK:
            self._flush()

    def execution(
        self,
        *,
        created_us: int,
        status: str,
        started_us: int | None = None,
        finished_us: int | None = None,
        logs: list[tuple[str, str]] = (),
        id: str | None = None,
        **columns,
    ) -> str:
        """An execution created (and available) at ``created_us`` (epoch microseconds),
        its id a UUIDv7 of that time unless given, with the log chunks ``logs`` ((stream,
        COPY text) each: see ``logs()``) and any other ``columns``. log_bytes defaults to
        the length of the logs. Returns its id."""
        eid = id or self.new_id(created_us)
        created = self.ts(created_us)
        started = created if started_us in (None, created_us) else self.ts(started_us)
        columns.setdefault("log_bytes", sum(len(message) for _, message in logs))
        self.add(
            self.models[0],
            id=eid,
            status=status,
            created_at=created,
            available_at=created,
            started_at=None if started_us is None else started,
            finished_at=None if finished_us is None else self.ts(finished_us),
            **columns,
        )
        if logs:
            self.logs(eid, logs, created_us if started_us is None else started_us, finished_us)
        return eid

    def logs(self, execution_id: str, chunks, start_us: int, end_us: int | None = None) -> None:
        """Log chunks (stream, message as COPY text) of an execution, seq 0, 1, ..., their
        times spread evenly from ``start_us`` to ``end_us`` (default: now)."""
        end_us = self.now_us if end_us is None else end_us
        step = max(1, (end_us - start_us) // max(len(chunks), 1))
        columns = ("execution_id", "seq", "stream", "message", "created_at")
        _, _, line, lines = self._copies.get((self.models[1], columns)) or self._copy(
            self.models[1], columns
        )
        for seq, (stream, message) in enumerate(chunks):  # add(), without its per-row cost
            lines.append(
                line.format(execution_id, seq, stream, message, self.ts(start_us + seq * step))
            )
        if len(lines) >= self.CHUNK:
            self._flush()

    def sync(self) -> None:
        """Wait until every row added so far is in the database."""
        self._flush()
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Send the rest, recreate the deferred indexes and constraints, commit."""
        if self._closed:
            return
        self.sync()
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        t0 = time.monotonic()
        for _, definition in self._indexes:
            self.conn.execute(definition)
        for table, name, _, definition in sorted(self._constraints, key=lambda c: c[2] == "f"):
            self.conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        self.rebuild_seconds = time.monotonic() - t0
        if self._indexes or self._constraints:
            say(
                f"  {len(self._indexes)} indexes and {len(self._constraints)} constraints "
                f"rebuilt in {self.rebuild_seconds:.1f} s"
            )
        self.conn.commit()
        self.conn.close()

    def _copy(self, model, columns: tuple[str, ...]) -> list:
        """The COPY statement and a str.format template of one line for ``columns`` of
        ``model``: every column the model has, constants from its field defaults."""
        from django.db import connection
        from django.db.models import AutoField, BigAutoField

        instance = model()
        names, parts, found = [], [], set()
        for field in model._meta.concrete_fields:
            if field.column in columns:
                found.add(field.column)
                parts.append(f"{{{columns.index(field.column)}}}")
            elif isinstance(field, AutoField | BigAutoField):
                continue  # an identity column: the database numbers the rows
            else:
                value = field.get_db_prep_save(getattr(instance, field.attname), connection)
                parts.append(copy_text(value).replace("{", "{{").replace("}", "}}"))
            names.append(f'"{field.column}"')
        if missing := set(columns) - found:
            raise RuntimeError(f"{model.__name__} has no columns {sorted(missing)}")
        table = model._meta.db_table
        freeze = " WITH (FREEZE)" if table in self._frozen else ""
        sql = f"COPY {table} ({', '.join(names)}) FROM STDIN{freeze}"
        copy = self._copies[(model, columns)] = [table, sql, "\t".join(parts) + "\n", []]
        return copy

    def _flush(self) -> None:
        self._raise()
        for table, sql, _, lines in self._copies.values():
            if lines:
                self.rows[table] += len(lines)
                self._queue.put((sql, "".join(lines)))
                lines.clear()

    def _raise(self) -> None:
        if self._error:
            raise RuntimeError("COPY failed") from self._error

    def _write(self) -> None:
        while True:
            chunk = self._queue.get()
            try:
                if chunk is None:
                    return
                if self._error is None:  # else drain, so that the producer never blocks
                    with self.conn.cursor() as cur, cur.copy(chunk[0]) as copy:
                        copy.write(chunk[1])
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()
