"""The floor of dispatch latency on this machine, for bench/bench_execution.py: the same
path as a Hodei execution's (a durable INSERT with its NOTIFY; a LISTENing runner woken by
it; a durable claim with UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING; `bash -c 'echo
$EPOCHREALTIME'` started with its output piped), written with nothing else: psycopg and
subprocess, no Django, no ORM, no events, no metrics, no working directory, no secrets.
What Hodei's row created -> command running costs above this is what its own code costs.

    python bench/bench_floor.py DSN    # the runner; prints what it ran when stopped

The runner claims up to 4 rows at a time and reads its commands' output in threads, so
that at 100/s a command's output does not hold up the next claim (as Hodei's agent reads
every command's pipes from one selector)."""

import os
import select
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

TABLE = "bench_floor_queue"
CHANNEL = "bench_floor"
PROGRAM = ["bash", "-c", "echo $EPOCHREALTIME"]


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, created double precision NOT "
            "NULL, started double precision)"
        )
        conn.execute(f"CREATE INDEX ON {TABLE} (id) WHERE started IS NULL")


def runner_main(dsn: str) -> int:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    listen = psycopg.connect(dsn, autocommit=True)
    listen.execute(f"LISTEN {CHANNEL}")
    conn = psycopg.connect(dsn, autocommit=True)
    claim = (
        f"UPDATE {TABLE} SET started = %s WHERE id IN (SELECT id FROM {TABLE} "
        "WHERE started IS NULL ORDER BY id LIMIT 4 FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    env = {k: os.environ[k] for k in ("PATH", "LANG") if k in os.environ}
    ran: dict[int, str] = {}
    readers = ThreadPoolExecutor(8)

    def read(job: int, proc: subprocess.Popen) -> None:
        out, _ = proc.communicate()
        ran[job] = out.decode().strip()

    print("bench-floor-runner ready", flush=True)
    while not stop:
        if not select.select([listen.fileno()], [], [], 0.5)[0]:
            continue
        listen.pgconn.consume_input()
        while listen.pgconn.notifies() is not None:
            pass
        while True:
            started = time.time()
            jobs = [row[0] for row in conn.execute(claim, [started], prepare=True)]
            for job in jobs:
                proc = subprocess.Popen(
                    PROGRAM,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    close_fds=True,
                    env=env,
                )
                readers.submit(read, job, proc)
            if len(jobs) < 4:
                break
    readers.shutdown(wait=True)
    for job, value in ran.items():
        print(f"ran {job} {value}")
    return 0


def pace(dsn: str, rate: float, seconds: float) -> None:
    """INSERT + NOTIFY, one statement each (autocommit), open loop at ``rate``."""
    sql = (
        f"WITH i AS (INSERT INTO {TABLE} (created) VALUES (%s) RETURNING id) "
        f"SELECT pg_notify('{CHANNEL}', id::text) FROM i"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.monotonic() + 0.05
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.execute(sql, [time.time()], prepare=True)


def rows(dsn: str, since: int) -> list[tuple[int, float, float]]:
    """(id, created, started) of the rows after id ``since``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            f"SELECT id, created, started FROM {TABLE} WHERE id > %s ORDER BY id", [since]
        ).fetchall()


def unclaimed(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {TABLE} WHERE started IS NULL").fetchone()[0]


def last_id(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}").fetchone()[0]


if __name__ == "__main__":
    sys.exit(runner_main(sys.argv[1]))
