"""The demo behind `make demo`: bake the default package, install it, train it, serve it, predict.

Every step is what a user would type; the script only strings them together and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CRASH = {
    "age": 27,
    "year_vehicle": 1995,
    "frontal": 1,
    "airbag_deployed": 0,
    "speed_band": "55+",
    "airbag": "none",
    "seatbelt": "none",
    "sex": "m",
    "occupant_role": "driver",
}


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run(*command: str, **kwargs) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server was not ready at {url} after {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="demo-out", help="scratch folder for the baked package")
    parser.add_argument("--port", type=int, default=8765, help="port the inference API listens on")
    args = parser.parse_args()
    out = Path(args.output).resolve()
    bin_dir = Path(sys.executable).parent

    step("bake the default package (car-crashes / crashed)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    run(str(bin_dir / "cookiecutter"), str(ROOT), "--no-input", "--output-dir", str(out))
    package = out / "car-crashes"

    step("install it next to hmlcore")
    run(sys.executable, "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"), "-e", str(package))

    env = {**os.environ, "HML_HOME": str(out / "hml-home")}
    crashed = str(bin_dir / "crashed")
    step("train: every pipeline step, locally")
    run(crashed, "pipelines", "crashed_pipeline", "run-all", env=env, cwd=package)

    step(f"serve with gunicorn on 127.0.0.1:{args.port}")
    server = subprocess.Popen(
        [crashed, "inference", "run-prod", "--host", "127.0.0.1", "--port", str(args.port), "--workers", "2"],
        env=env,
        cwd=package,
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        wait_ready(f"{base}/readyz", server)
        url = f"{base}/predict?{urllib.parse.urlencode(SAMPLE_CRASH)}"
        step("predict a sample crash")
        print(f"$ curl '{url}'")
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        print(json.dumps(answer, indent=2))
        probability = answer["predictions"][0]["probability"]
        print(f"\nAn unbelted 27-year-old driver in a 55+ km/h frontal crash: {probability:.1%} chance of death.")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    step("server stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
