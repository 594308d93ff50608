"""What monitoring costs over HTTP: the demo model under ``run-prod``, with and without ``enable_monitoring``.

The same baked and trained package is served twice with the same worker count; the second server's
process replaces ``hml.enable_monitoring`` with a no-op before the app is built, so it
serves exactly the same routes but without ``/metrics``, ``/drift`` and the request counting. ``wrk``
loads each in turn (GET and POST one row, concurrency 1 and 8; several alternating rounds, best kept)
and the drop in req/s is printed. Target (issue #8): serving speed drops by at most 5 %.

    python benchmarks/monitoring_http.py --workers 2 --duration 3 --rounds 3
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve import bake_and_train, bench_arguments, entrypoint, free_port, sample_records, wait_ready, wrk  # noqa: E402

UNMONITORED = [
    sys.executable,
    "-c",
    "import sys; from hmlcore import hml; hml.enable_monitoring = lambda *a, **k: None; "
    "from crashed.start import main; sys.argv[0] = 'crashed'; main()",
]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def main() -> int:
    args = bench_arguments(__doc__, rounds=3)
    if args is None:
        return 2
    with tempfile.TemporaryDirectory(prefix="hml-bench-") as tmp:
        work = Path(tmp)
        project, env = bake_and_train(work)
        ports = {"monitored": free_port(), "unmonitored": free_port()}
        commands = {"monitored": entrypoint(), "unmonitored": UNMONITORED}
        serve = ["inference", "run-prod", "--host", "127.0.0.1", "--workers", str(args.workers)]
        servers = {
            name: subprocess.Popen(
                [*commands[name], *serve, "--port", str(ports[name])],
                cwd=project,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name in ports
        }
        bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        try:
            for name, server in servers.items():
                wait_ready(bases[name], server)
            if _status(f"{bases['unmonitored']}/metrics") != 404 or _status(f"{bases['monitored']}/metrics") != 200:
                raise SystemExit("only the monitored server may serve /metrics")
            one = sample_records(1)[0]
            cases = {"GET 1 row": ("/predict?" + urllib.parse.urlencode(one), None), "POST 1 row": ("/predict", json.dumps(one))}
            print(f"\n{args.workers} workers each, wrk {args.duration}s per run, best of {args.rounds} alternating runs\n")
            print(f"{'case':<14} {'c':>3} | {'monitored req/s':>15} {'p99 ms':>7} | {'unmonitored req/s':>17} {'p99 ms':>7} | drop")
            drops = []
            for case, (path, body) in cases.items():
                for concurrency in (1, 8):
                    best: dict[str, dict[str, float]] = {}
                    for _ in range(args.rounds):
                        for name in ("unmonitored", "monitored"):
                            result = wrk(bases[name] + path, concurrency=concurrency, duration=args.duration, body=body, work=work)
                            if name not in best or result["rps"] > best[name]["rps"]:
                                best[name] = result
                    drop = 1 - best["monitored"]["rps"] / best["unmonitored"]["rps"]
                    drops.append(drop)
                    print(
                        f"{case:<14} {concurrency:>3} | {best['monitored']['rps']:>15.0f} {best['monitored']['p99']:>7.2f} | "
                        f"{best['unmonitored']['rps']:>17.0f} {best['unmonitored']['p99']:>7.2f} | {drop:+.1%}"
                    )
            mean = sum(drops) / len(drops)
            print(f"\nmean drop in req/s with monitoring: {mean:.1%} (target <= 5 %) {'ok' if mean <= 0.05 else 'MISSED'}")
        finally:
            for server in servers.values():
                server.terminate()
                server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
