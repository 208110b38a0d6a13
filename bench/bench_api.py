"""What one `POST /api/v1/execute` costs the worker manager in CPU.

Two ways, on a database of its own (hodei_bench_api):

- in process: Django's WSGI handler called directly (every middleware, DRF, PostgreSQL),
  CPU by `time.process_time`; hot (requests back to back) and paced (one every
  1/RATE s, as the execution benchmark's 10/s sends them, where the CPU's caches have
  gone cold between requests);
- under gunicorn (the worker manager's own configuration, access log off): the CPU of
  the process tree per request, one keep-alive client, hot and paced.

Beside the execute endpoint, the same figures for ``GET /health`` (Django with every
middleware, no DRF, no database) show what the stack costs before the endpoint's own
work. Medians of ``--reps`` runs.

The CPU figures move by 10-20 % from run to run on a shared VM. ``--instructions`` counts
instead the instructions one request executes in process, under valgrind's callgrind
(repeatable to within 1 %, whatever else the machine does): the count of 120 requests
less that of 20, over 100, with the garbage collector off (a full collection falls into
one run and not the other by chance) and a fixed hash seed.

    python3 bench/bench_api.py [--requests 1000] [--paced 100] [--rate 10] [--reps 3]
    python3 bench/bench_api.py --instructions
"""

import argparse
import gc
import http.client
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import manage, median, say, tree_cpu  # noqa: E402

DB = "hodei_bench_api"
BODY = json.dumps({"command": "echo $EPOCHREALTIME", "type": "bash"}).encode()
# name: (method, path, body, the status it answers)
ENDPOINTS = {
    "health": ("GET", "/health", b"", 200),
    "execute": ("POST", "/api/v1/execute", BODY, 201),
}


def wsgi_call(handler, environ_base: dict, body: bytes) -> int:
    environ = dict(environ_base)
    environ["wsgi.input"] = io.BytesIO(body)
    result = []

    def start_response(status, headers, exc_info=None):
        result.append(int(status.split()[0]))

    response = handler(environ, start_response)
    for _ in response:
        pass
    if hasattr(response, "close"):
        response.close()
    return result[0]


def environ_for(method: str, path: str, token: str, body: bytes) -> dict:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8082",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def in_process(token: str, requests: int, paced: int, rate: float) -> dict:
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    out = {}
    for name, (method, path, body, expect) in ENDPOINTS.items():
        environ = environ_for(method, path, token, body)
        for _ in range(50):  # warm-up: imports, prepared statements, caches
            assert wsgi_call(handler, environ, body) == expect
        gc.collect()
        t0 = time.process_time()
        for _ in range(requests):
            wsgi_call(handler, environ, body)
        hot = (time.process_time() - t0) / requests
        cpu = 0.0
        for _ in range(paced):
            time.sleep(1 / rate)
            t0 = time.process_time()
            status = wsgi_call(handler, environ, body)
            cpu += time.process_time() - t0
            assert status == expect, status
        out[name] = {"hot_ms": 1000 * hot, "paced_ms": 1000 * cpu / max(1, paced)}
    return out


def count_loop(endpoint: str, n: int) -> None:
    """Hidden mode (under valgrind): ``n`` requests to ``endpoint`` in process, after a
    warm-up, with the garbage collector off."""
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    method, path, body, expect = ENDPOINTS[endpoint]
    environ = environ_for(method, path, os.environ["BENCH_API_TOKEN"], body)
    for _ in range(10):
        assert wsgi_call(handler, environ, body) == expect
    gc.collect()
    gc.disable()
    for _ in range(n):
        wsgi_call(handler, environ, body)


def instructions(url: str, token: str) -> dict:
    def count(endpoint: str, n: int) -> int:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
            + [str(benchlib.VENV_PY), __file__, "--count-loop", endpoint, str(n)],
            env={**os.environ, "BENCH_API_TOKEN": token, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=True,
        )
        return int(re.search(r"Collected : (\d+)", out.stderr).group(1))

    out = {}
    for endpoint in ENDPOINTS:
        few, more = count(endpoint, 20), count(endpoint, 120)
        out[endpoint] = (more - few) / 100
        say(f"{endpoint}: {out[endpoint] / 1e6:.2f} M instructions per request")
    return out


def under_gunicorn(url: str, token: str, requests: int, paced: int, rate: float) -> dict:
    api, port = benchlib.start_api("gunicorn-bench-api", url)
    out = {}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def call(method, path, body):
            conn.request(method, path, body or None, headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status

        for name, (method, path, body, expect) in ENDPOINTS.items():
            for _ in range(100):  # both workers warm: the client's connection may move
                assert call(method, path, body) == expect
            t0 = tree_cpu(api.pid)
            for _ in range(requests):
                call(method, path, body)
            hot = (tree_cpu(api.pid) - t0) / requests
            t0 = tree_cpu(api.pid)
            started = time.monotonic()
            for i in range(paced):
                delay = started + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                assert call(method, path, body) == expect
            paced_cpu = (tree_cpu(api.pid) - t0) / max(1, paced)
            out[name] = {"hot_ms": 1000 * hot, "paced_ms": 1000 * paced_cpu}
        # What the server costs doing nothing for as long as the paced phase lasted.
        t0 = tree_cpu(api.pid)
        time.sleep(paced / rate)
        out["idle_ms_per_paced_request"] = 1000 * (tree_cpu(api.pid) - t0) / max(1, paced)
    finally:
        api.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="hot requests per rep")
    parser.add_argument("--paced", type=int, default=100, help="paced requests per rep")
    parser.add_argument("--rate", type=float, default=10.0, help="paced requests per second")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-gunicorn", action="store_true", help="in process only")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per request instead"
    )
    parser.add_argument("--count-loop", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.count_loop:
        benchlib.setup_django(benchlib.db_url(DB), HODEI_SERVICE="workermanager")
        count_loop(args.count_loop[0], int(args.count_loop[1]))
        return
    url = benchlib.recreate_database(DB, migrate=True)
    token = manage(url, "createtoken", "bench", "--superuser").strip().splitlines()[-1]
    if args.instructions:
        counts = instructions(url, token)
        print("\ninstructions per request, in process (callgrind, garbage collector off)")
        for endpoint, value in counts.items():
            print(f"{endpoint:<10}{value / 1e6:>8.2f} M")
        path = benchlib.save_results("api-instructions", {"instructions": counts})
        print(f"\nraw: {path.relative_to(benchlib.ROOT)}")
        return
    benchlib.setup_django(url, HODEI_SERVICE="workermanager")
    say(f"load {benchlib.loadavg():.2f}")
    runs = {"in_process": [], "gunicorn": []}
    try:
        for rep in range(args.reps):
            runs["in_process"].append(in_process(token, args.requests, args.paced, args.rate))
            say(f"rep {rep + 1} in process: {runs['in_process'][-1]}")
            if not args.no_gunicorn:
                runs["gunicorn"].append(
                    under_gunicorn(url, token, args.requests, args.paced, args.rate)
                )
                say(f"rep {rep + 1} gunicorn: {runs['gunicorn'][-1]}")
    finally:
        benchlib.stop_all()

    print(f"\nCPU per request, ms: median of {args.reps} (each rep in brackets)")
    print(f"{'':<22}{'hot':>26}{f'paced {args.rate:g}/s':>26}")
    for where, reps in runs.items():
        if not reps:
            continue
        for name in ("health", "execute"):
            cells = []
            for key in ("hot_ms", "paced_ms"):
                values = [r[name][key] for r in reps]
                each = " ".join(f"{v:.2f}" for v in values)
                cells.append(f"{median(values):.2f} ({each})")
            print(f"{where + ' ' + name:<22}{cells[0]:>26}{cells[1]:>26}")
        if where == "gunicorn":
            idle = [r["idle_ms_per_paced_request"] for r in reps]
            print(f"{'gunicorn idle':<22}{'':>26}{statistics.median(idle):>26.2f}")
    path = benchlib.save_results(
        "api", {"args": vars(args), "load": benchlib.loadavg(), "runs": runs}
    )
    print(f"\nraw: {path.relative_to(benchlib.ROOT)}")


if __name__ == "__main__":
    benchlib.run_in_project_venv()
    main()
