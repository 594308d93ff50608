"""Serving benchmark: ``crashed inference run-prod`` against a bare Flask + gunicorn reference server.

Bakes the template with its default answers, trains the demo model (``crashed pipelines crashed_pipeline
run-all``), then serves it twice side by side with the same number of workers: hmlcore's ``run-prod`` and
``benchmarks/reference_server.py`` (the feature vector built by hand, the XGBoost booster called
directly). With ``--kinds`` it does the same for a multiclass and a regression model (XGBoost, trained
by hmlcore on the crash data: the impact speed band from the rest, and the occupant's age from the
rest), served by an hmlcore app with monitoring as the template's is. ``wrk`` loads each from this
machine: GET one row (plain, and with its categorical values %-encoded, as ``speed_band=55%2B`` is), POST
one row (at once, and with its body in a second TCP segment: an asyncio client, wrk cannot) and POST 1,000
rows, at concurrency 1, 8 and 32. It prints req/s,
p50 and p99, the CPU time and the context switches each server spent per request (all its processes and
threads, from ``/proc``), the RSS/PSS/USS of each worker after the load (and whether pandas is mapped into it), the
in-process time of the 1,000-row batch (and the encoding's), and how the figures compare with the targets:

- single-row req/s >= 0.85 x the reference server's;
- p99 <= 10 ms at concurrency 8;
- a 1,000-row batch (p50 at concurrency 1) <= 3 x (in-process predict + encode) for that batch.

The figures are printed, not asserted (they depend on the machine and on what else runs on it).

hmlcore's serving path never imports pandas, but xgboost imports scikit-learn, which imports pandas
when it is installed, so both servers' workers carry it here. ``--hide-pandas`` starts both as if
pandas were not installed (training still uses it), to show what a worker weighs without it. The
models (and with them pandas) are loaded before gunicorn forks, so a worker shares those pages with the
master: RSS counts them in full in every worker, USS shows what each worker adds of its own.

    apt-get install -y wrk        # Debian / Ubuntu (brew install wrk on macOS)
    python benchmarks/serve.py --workers 2 --duration 3 --rounds 2
    python benchmarks/serve.py --kinds binary,multiclass,regression --scenarios "GET 1 row,POST 1 row"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 8, 32)
KINDS = ("binary", "multiclass", "regression")
SCENARIOS = ("GET 1 row", "GET 1 row %-encoded", "POST 1 row", "POST 1 row body later", "POST 1000 rows")
#: the demo's features (its target: dead)
CRASH_NUMERIC = ["age", "year_vehicle", "frontal", "airbag_deployed"]
CRASH_CATEGORICAL = ["speed_band", "airbag", "seatbelt", "sex", "occupant_role"]
#: the models of the other kinds, trained on the same data: (target, numeric features, categorical features)
OTHER_KINDS = {
    "multiclass": (
        "speed_band",
        ["age", "year_vehicle", "frontal", "airbag_deployed", "dead"],
        ["airbag", "seatbelt", "sex", "occupant_role"],
    ),
    "regression": ("age", ["year_vehicle", "frontal", "airbag_deployed", "dead"], CRASH_CATEGORICAL),
}
#: an hmlcore app serving the model that $HML_BENCH_MODEL (JSON) describes, as a baked package's start.py does
APP_SCRIPT = """
import json, os, sys
from hmlcore import hml

spec = json.loads(os.environ["HML_BENCH_MODEL"])
app = hml.HmlApp(name="bench", package_entrypoint="bench")
container = hml.ModelContainer("bench", "bench", spec["numeric"], spec["categorical"], spec["target"], kind=spec["kind"], lake=spec["lake"])
app.register_model("bench", container)


@hml.inference(app.inference)
def start(inference_app):
    inference_app.get_model("bench").load(spec["reference"])
    hml.enable_monitoring(inference_app)


app.start(sys.argv[1:])
"""


def bench_arguments(description: str | None, *, rounds: int, kinds: bool = False) -> argparse.Namespace | None:
    """The options both HTTP benchmarks take; None (after saying how to install it) when wrk is missing."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="gunicorn workers for both servers")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=rounds, help="runs per server and case, alternating; the best is kept")
    if kinds:
        parser.add_argument("--kinds", default="binary", help=f"comma-separated model kinds to serve: {', '.join(KINDS)}")
        parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS).replace("%", "%%"))
        parser.add_argument("--hide-pandas", action="store_true", help="serve as if pandas were not installed (see above)")
    args = parser.parse_args()
    if kinds:
        args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        bad = [k for k in args.kinds if k not in KINDS] + [s for s in args.scenarios if s not in SCENARIOS]
        if bad:
            parser.error(f"unknown kind or scenario {bad[0]!r}")
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get update && apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)", file=sys.stderr)
        return None
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bake_and_train(work: Path) -> tuple[Path, dict[str, str]]:
    """The default package baked under ``work`` and trained in its own HML_HOME; return its folder and env."""
    from cookiecutter.main import cookiecutter

    project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(work)))
    env = {**os.environ, "HML_HOME": str(work / "hml-home"), "PYTHONPATH": str(project)}
    print(f"training the demo model in {project} ...", flush=True)
    subprocess.run([*entrypoint(), "pipelines", "crashed_pipeline", "run-all"], cwd=project, env=env, check=True, capture_output=True)
    return project, env


def entrypoint(*, hide_pandas: bool = False) -> list[str]:
    hide = "sys.modules['pandas'] = None; " if hide_pandas else ""
    return [sys.executable, "-c", f"import sys; {hide}from crashed.start import main; sys.argv[0] = 'crashed'; main()"]


def python_script(path: Path, *, hide_pandas: bool) -> list[str]:
    """The command that runs the script ``path`` (its arguments follow), with ``import pandas`` failing if ``hide_pandas``."""
    if not hide_pandas:
        return [sys.executable, str(path)]
    code = "import runpy, sys; sys.modules['pandas'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    return [sys.executable, "-c", code, str(path)]


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"a server exited with code {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{base} was not ready after {timeout:.0f}s")


DATA = ROOT / "{{cookiecutter.project_slug}}" / "{{cookiecutter.package_name}}" / "data" / "nass_cds.csv.gz"


def features_of(kind: str) -> list[str]:
    if kind == "binary":
        return CRASH_NUMERIC + CRASH_CATEGORICAL
    _, numeric, categorical = OTHER_KINDS[kind]
    return numeric + categorical


def sample_records(rows: int, kind: str = "binary") -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(DATA)[features_of(kind)].dropna().sample(rows, replace=True, random_state=0)
    return json.loads(frame.to_json(orient="records"))


def train_kind(work: Path, kind: str) -> dict[str, Any]:
    """Train and publish an XGBoost model of ``kind`` on the crash data with hmlcore; return what the app script needs."""
    import pandas as pd
    from xgboost import XGBClassifier, XGBRegressor

    from hmlcore import hml

    target, numeric, categorical = OTHER_KINDS[kind]
    lake = str(work / f"lake-{kind}")
    container = hml.ModelContainer("bench", "bench", numeric, categorical, target, kind=kind, lake=lake)
    frame = pd.read_csv(DATA)
    container.analyze_distributions(frame)
    features, y = container.build_training_matrix(frame)
    options = {"n_estimators": 300, "max_depth": 4, "learning_rate": 0.05, "tree_method": "hist", "random_state": 0}
    model = (XGBRegressor if kind == "regression" else XGBClassifier)(**options).fit(features, y)
    reference = container.bind_model(model).publish(run_id=f"bench-{kind}", git_commit="bench")
    return {"kind": kind, "target": target, "numeric": numeric, "categorical": categorical, "lake": lake, "reference": reference}


def wrk(url: str, *, concurrency: int, duration: int, body: str | None, work: Path, server: int | None = None) -> dict[str, float]:
    """Run wrk; return req/s, p50 and p99 (ms) and the count of failed responses.

    With ``server`` (the gunicorn master's pid), also the CPU time (µs) and the context switches its
    processes spent per request: ``cpu_us`` and ``switches``.
    """
    command = ["wrk", f"-t{min(concurrency, 2)}", f"-c{concurrency}", f"-d{duration}s", "--latency"]
    if body is not None:
        script = work / f"post-{len(body)}.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
        command += ["-s", str(script)]
    before = server_usage(server) if server is not None else (0.0, 0)
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    after = server_usage(server) if server is not None else (0.0, 0)
    requests = max(int(re.search(r"(\d+) requests in", output).group(1)), 1)  # type: ignore[union-attr]
    usage = {"cpu_us": (after[0] - before[0]) / requests * 1e6, "switches": (after[1] - before[1]) / requests}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = int(bad.group(1)) if bad else 0
    failed += sum(int(g) for g in errors.groups()) if errors else 0
    return {"rps": rps, "p50": latency.get("50", float("nan")), "p99": latency.get("99", float("nan")), "failed": failed, **usage}


def split_load(url: str, *, concurrency: int, duration: int, body: str | None, work: Path, server: int | None = None) -> dict[str, float]:
    """Like :func:`wrk`, for a POST whose body is sent in a second TCP segment, after its headers (an asyncio client).

    wrk writes each request at once; this client writes the headers, lets them leave, then writes the body
    (TCP_NODELAY: two segments). It runs in this process, so it is slower than wrk: compare its figures
    between the two servers, not with wrk's.
    """
    import asyncio

    parsed = urllib.parse.urlsplit(url)
    data = (body or "").encode()
    head = f"POST {parsed.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
    latencies: list[float] = []
    failed = [0]

    async def client(end: float) -> None:
        """One connection at a time, asking until ``end``; a new one when the server closes (as wrk does)."""
        while time.monotonic() < end:
            reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
            try:
                while time.monotonic() < end:
                    begun = time.monotonic()
                    writer.write(head)
                    await writer.drain()
                    await asyncio.sleep(0)
                    writer.write(data)
                    status = await reader.readline()
                    if not status:
                        break  # closed by the server (every 100th answer closes): reconnect
                    length, closing = 0, False
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.partition(b":")
                        if name.lower() == b"content-length":
                            length = int(value)
                        closing |= name.lower() == b"connection" and b"close" in value.lower()
                    await reader.readexactly(length)
                    if not status.startswith(b"HTTP/1.1 200"):
                        failed[0] += 1
                    latencies.append((time.monotonic() - begun) * 1000)
                    if closing:
                        break
            except (OSError, asyncio.IncompleteReadError):
                failed[0] += 1
            finally:
                writer.close()

    async def run() -> None:
        end = time.monotonic() + duration
        await asyncio.gather(*(client(end) for _ in range(concurrency)))

    before = server_usage(server) if server is not None else (0.0, 0)
    begun = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - begun
    after = server_usage(server) if server is not None else (0.0, 0)
    count = max(len(latencies), 1)
    ordered = sorted(latencies) or [float("nan")]
    return {
        "rps": len(latencies) / elapsed,
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "failed": failed[0],
        "cpu_us": (after[0] - before[0]) / count * 1e6,
        "switches": (after[1] - before[1]) / count,
    }


def percent_encoded(record: dict[str, Any], kind: str) -> str:
    """``record``'s query string with every character of its categorical values %-encoded (``speed_band=55%2B``'s form)."""
    categorical = set(CRASH_CATEGORICAL if kind == "binary" else OTHER_KINDS[kind][2])
    return "&".join(
        f"{key}={''.join(f'%{b:02X}' for b in str(value).encode())}" if key in categorical else f"{key}={value}"
        for key, value in record.items()
    )


def server_usage(master: int) -> tuple[float, int]:
    """CPU seconds and context switches (voluntary and not) of every thread of ``master`` and its children so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu, switches = 0.0, 0
    for pid in [master, *children(master)]:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / ticks
                switches += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", (task / "status").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # a thread or worker that ended meanwhile
    return cpu, switches


def _usage(got: dict[str, float]) -> str:
    """p50, p99, and the server's CPU µs and context switches per request, as table cells."""
    return f"{got['p50']:>7.2f} {got['p99']:>7.2f} {got['cpu_us']:>7.0f} {got['switches']:>5.1f}"


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def children(master: int) -> list[int]:
    """The pids of the processes whose parent is ``master`` (gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def worker_memory(master: int) -> list[tuple[int, float, float, float, bool]]:
    """``(pid, RSS MiB, PSS MiB, USS MiB, pandas mapped)`` of each child of the gunicorn ``master``.

    RSS counts the pages a worker shares with the master (everything imported before the fork) in full;
    PSS counts a shared page divided by the processes sharing it; USS (private) is what the worker alone adds.
    """
    out = []
    for pid in children(master):
        entry = Path(f"/proc/{pid}")
        try:
            rollup = (entry / "smaps_rollup").read_text()
            pandas = "/pandas/" in (entry / "maps").read_text()
        except (OSError, ValueError, IndexError):
            continue
        kib = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
        private = kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)
        out.append((int(entry.name), kib.get("Rss", 0) / 1024, kib.get("Pss", 0) / 1024, private / 1024, pandas))
    return sorted(out)


def in_process(spec: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds the model takes to answer ``records`` in-process (single thread), and the encodings."""
    import pandas as pd

    from hmlcore import hml

    container = hml.ModelContainer(
        spec["name"], spec["project"], spec["numeric"], spec["categorical"], spec["target"], kind=spec["kind"], lake=spec["lake"]
    ).load(spec["reference"])
    frame = pd.DataFrame(records)
    matrix = container.encode(records)
    text = json.dumps(records)
    return {
        "predict": _best(lambda: container.predict(matrix)),
        "encode records (what the API does)": _best(lambda: container.encode(records)),
        "encode the same rows as a DataFrame": _best(lambda: container.encode(frame)),
        "json parse": _best(lambda: json.loads(text)),
    }


def _best(func: Any, repeat: int = 30) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def serve_kind(
    kind: str, work: Path, args: argparse.Namespace
) -> tuple[dict[tuple[str, str, int], dict[str, float]], dict[str, float], dict[str, float]]:
    """Serve a model of ``kind`` with hmlcore and with the reference server.

    Prints and returns the wrk figures, the in-process timings, and each server's mean worker RSS (MiB) after the load.
    """
    if kind == "binary":
        project, env = bake_and_train(work)
        pointer = json.loads((work / "hml-home/lake/models/car-crashes/crashed/current.json").read_text())
        hml_command, cwd = [*entrypoint(hide_pandas=args.hide_pandas), "inference", "run-prod"], project
        spec = {"kind": kind, "target": "dead", "numeric": CRASH_NUMERIC, "categorical": CRASH_CATEGORICAL}
        spec |= {"lake": str(work / "hml-home/lake"), "reference": pointer["reference"], "name": "crashed", "project": "car-crashes"}
    else:
        print(f"training the {kind} model ...", flush=True)
        spec = {**train_kind(work, kind), "name": "bench", "project": "bench"}
        script = work / f"app_{kind}.py"
        script.write_text(APP_SCRIPT)
        env = {**os.environ, "HML_BENCH_MODEL": json.dumps(spec), "HML_HOME": str(work / f"home-{kind}")}
        hml_command, cwd = [*python_script(script, hide_pandas=args.hide_pandas), "inference", "run-prod"], work
    hml_port, ref_port = free_port(), free_port()
    servers = {
        "hmlcore": subprocess.Popen(
            [*hml_command, "--host", "127.0.0.1", "--port", str(hml_port), "--workers", str(args.workers)],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        "reference": subprocess.Popen(
            [*python_script(ROOT / "benchmarks/reference_server.py", hide_pandas=args.hide_pandas), spec["reference"]]
            + ["--port", str(ref_port), "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    }
    bases = {"hmlcore": f"http://127.0.0.1:{hml_port}", "reference": f"http://127.0.0.1:{ref_port}"}
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    rss: dict[str, float] = {}
    batch = sample_records(1000, kind)
    try:
        for name, server in servers.items():
            wait_ready(bases[name], server)
        one = sample_records(1, kind)[0]
        scenarios = {
            "GET 1 row": ("/predict?" + urllib.parse.urlencode(one), None),
            "GET 1 row %-encoded": ("/predict?" + percent_encoded(one, kind), None),
            "POST 1 row": ("/predict", json.dumps(one)),
            "POST 1 row body later": ("/predict", json.dumps(one)),
            "POST 1000 rows": ("/predict", json.dumps(batch)),
        }
        print(f"\n{kind} model: {args.workers} workers each, wrk {args.duration}s per run, best of {args.rounds} alternating runs\n")
        columns = f"{'p50 ms':>7} {'p99 ms':>7} {'CPU µs':>7} {'cs':>5}"
        header = f"{'hmlcore req/s':>13} {columns} | {'ref req/s':>9} {columns}"
        print(f"{'scenario':<16} {'c':>3} | {header} | ratio")
        for scenario in args.scenarios:
            path, body = scenarios[scenario]
            for concurrency in CONCURRENCY:
                row = {}
                for round_ in range(args.rounds):  # alternate the servers; keep each one's best run
                    for name in list(servers)[:: 1 if round_ % 2 == 0 else -1]:
                        load = split_load if scenario.endswith("body later") else wrk
                        got = load(
                            bases[name] + path,
                            concurrency=concurrency,
                            duration=args.duration,
                            body=body,
                            work=work,
                            server=servers[name].pid,
                        )
                        if name not in row or got["rps"] > row[name]["rps"]:
                            row[name] = results[(scenario, name, concurrency)] = got
                h, r = row["hmlcore"], row["reference"]
                failed = f"  FAILED hml={h['failed']:.0f} ref={r['failed']:.0f}" if h["failed"] or r["failed"] else ""
                print(
                    f"{scenario:<16} {concurrency:>3} | {h['rps']:>13.0f} {_usage(h)} | "
                    f"{r['rps']:>9.0f} {_usage(r)} | {h['rps'] / r['rps']:.2f}{failed}",
                    flush=True,
                )
        print("\nmemory per worker after the load (MiB):")
        for name, server in servers.items():
            workers = worker_memory(server.pid)
            for pid, resident, proportional, private, pandas in workers:
                print(
                    f"  {name:<10} pid {pid}: RSS {resident:.0f}, PSS {proportional:.0f}, USS {private:.0f}, "
                    f"pandas {'loaded' if pandas else 'not loaded'}"
                )
            rss[name] = sum(w[1] for w in workers) / max(len(workers), 1)
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGTERM)
        for server in servers.values():
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    timings = in_process(spec, batch)
    print(f"\n{kind}, in-process, 1,000 rows (best of 30, ms): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    return results, timings, rss


def main() -> int:
    args = bench_arguments(__doc__, rounds=2, kinds=True)
    if args is None:
        return 2

    with tempfile.TemporaryDirectory(prefix="hml-bench-") as tmp:
        measured = {kind: serve_kind(kind, Path(tmp), args) for kind in args.kinds}
    print("\ntargets:")
    for kind, (results, timings, rss) in measured.items():
        print(f"  {kind}: RSS per worker after the load {rss.get('hmlcore', 0):.0f} MiB, the reference's {rss.get('reference', 0):.0f} MiB")
        for scenario in [s for s in args.scenarios if s != "POST 1000 rows"]:
            for concurrency in CONCURRENCY:
                ratio = results[(scenario, "hmlcore", concurrency)]["rps"] / results[(scenario, "reference", concurrency)]["rps"]
                print(f"  {kind}, {scenario}, c={concurrency}: {ratio:.2f} x the reference's req/s (target >= 0.85) {_mark(ratio >= 0.85)}")
            p99 = results[(scenario, "hmlcore", 8)]["p99"]
            print(f"  {kind}, {scenario}, c=8: p99 {p99:.2f} ms (target <= 10) {_mark(p99 <= 10)}")
        if "POST 1000 rows" in args.scenarios:
            budget = 3 * (timings["predict"] + timings["encode records (what the API does)"])
            served = results[("POST 1000 rows", "hmlcore", 1)]["p50"]
            print(
                f"  {kind}, POST 1000 rows, c=1: p50 {served:.2f} ms; 3 x (predict + the served encoding) = {budget:.2f} ms "
                f"{_mark(served <= budget)}"
            )
    return 0


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    raise SystemExit(main())
