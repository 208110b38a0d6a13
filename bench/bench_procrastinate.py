"""The procrastinate side of bench/bench_execution.py (the comparison baseline).

Runs ONLY under the separate benchmark virtualenv (var/bench-venv), which
bench_execution.py creates with `pip install procrastinate psycopg[binary]`; procrastinate
is never a dependency of Hodei itself. bench_execution.py drives it:

    var/bench-venv/bin/python bench/bench_procrastinate.py --dsn DSN schema
    var/bench-venv/bin/python bench/bench_procrastinate.py --dsn DSN defer N
    var/bench-venv/bin/python bench/bench_procrastinate.py --dsn DSN worker --concurrency C --name W
    var/bench-venv/bin/python bench/bench_procrastinate.py --dsn DSN pace --rate R --seconds S

Each job runs a program (``--program``, default `bash -c true`: what a Hodei execution
of type bash with the command `true` runs, so that both sides run the same program) as a
subprocess with its stdout and stderr piped and read to the end, as a Hodei agent does
with a command's output. The bench measures the drain from
the database (procrastinate_events 'started' / 'succeeded' rows), the same way it
measures Hodei (started_at / finished_at).

For the dispatch latency, ``pace`` defers ``run_echo`` jobs open loop at a given rate
(printing ``sent JOB_ID UNIX_TIME`` for each), and each such job prints ``ran JOB_ID
OUTPUT``: what its program (``bash -c 'echo $EPOCHREALTIME'``, as Hodei's latency
executions run) wrote, the moment the program ran.
"""

import argparse
import asyncio
import logging
import sys
import time

import procrastinate
import psycopg_pool

# The app lives in this script on purpose (it is a benchmark, not an importable module).
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)


def make_app(
    dsn: str, pool_size: int, program: tuple[str, ...] = ("bash", "-c", "true")
) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn,
        min_size=min(2, pool_size),
        max_size=pool_size,
        pool_factory=psycopg_pool.AsyncConnectionPool,
    )
    app = procrastinate.App(connector=connector)

    @app.task(name="run_true")
    async def run_true():
        proc = await asyncio.create_subprocess_exec(
            *program,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(program)} exited {proc.returncode}")

    @app.task(name="run_echo", pass_context=True)
    async def run_echo(context):
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            "echo $EPOCHREALTIME",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        print(f"ran {context.job.id} {out.decode().strip()}", flush=True)

    return app


def pace(app: procrastinate.App, rate: float, seconds: float) -> None:
    """Defer run_echo jobs open loop, ``rate`` a second for ``seconds``."""
    task = app.tasks["run_echo"]
    start = time.monotonic() + 0.05
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.time()
        print(f"sent {task.defer()} {sent:.6f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("schema")
    defer = sub.add_parser("defer")
    defer.add_argument("n", type=int)
    paced = sub.add_parser("pace")
    paced.add_argument("--rate", type=float, required=True)
    paced.add_argument("--seconds", type=float, required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--name", default="worker")
    worker.add_argument("--program", default="bash -c true", help="what each job runs")
    args = parser.parse_args()

    if args.cmd == "schema":
        app = make_app(args.dsn, 2)
        with app.open():
            app.schema_manager.apply_schema()
        return 0

    if args.cmd == "defer":
        app = make_app(args.dsn, 2)
        with app.open():
            task = app.tasks["run_true"]
            batch = 1000
            for start in range(0, args.n, batch):
                task.batch_defer(*({} for _ in range(min(batch, args.n - start))))
        return 0

    if args.cmd == "pace":
        app = make_app(args.dsn, 2)
        with app.open():
            pace(app, args.rate, args.seconds)
        return 0

    # worker: a pool big enough that no job waits for a connection (one per concurrent
    # job, plus the LISTEN connection and one spare), as procrastinate's docs advise.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = make_app(args.dsn, args.concurrency + 2, tuple(args.program.split(" ", 2)))
    print("bench-procrastinate-worker starting", flush=True)
    app.run_worker(
        concurrency=args.concurrency,
        name=args.name,
        wait=True,
        listen_notify=True,
        fetch_job_polling_interval=1.0,
        delete_jobs="never",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
