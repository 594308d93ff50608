"""How long ``crashed --help`` takes, and proof that it does not import kfp. Prints figures; asserts nothing.

python benchmarks/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from _bake import bake_default

HELP = "import sys; sys.argv = ['crashed', '--help']; from crashed.start import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
PROBE = (
    "import sys; from crashed.start import create_app; from click.testing import CliRunner; "
    "CliRunner().invoke(create_app().cli(), ['--help']); "
    "print(len([m for m in sys.modules if m.split('.')[0] in ('kfp', 'kfp_server_api')]))"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    project = bake_default()
    env_cwd = {"cwd": project}
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", HELP], check=True, capture_output=True, **env_cwd)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import kfp"], check=True, capture_output=True)
    kfp_import = time.perf_counter() - started
    kfp_modules = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, **env_cwd).stdout.strip()
    print(f"crashed --help: median {statistics.median(timings):.3f}s, min {min(timings):.3f}s over {args.runs} runs")
    print(f"kfp modules imported by --help: {kfp_modules}")
    print(f"for scale, a bare 'python -c \"import kfp\"': {kfp_import:.3f}s")
    shutil.rmtree(project.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
