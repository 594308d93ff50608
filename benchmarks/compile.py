"""How long compiling the demo pipeline (the baked default's crashed_pipeline) takes. Prints figures; asserts nothing.

    python benchmarks/compile.py [--runs 5]

"cold" is a fresh process running ``crashed pipelines crashed_pipeline compile`` (kfp imported inside);
"warm" is compile_pipeline again in one process.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bake import bake_default

COLD = (
    "import sys; sys.argv = ['crashed', 'pipelines', 'crashed_pipeline', 'compile', '-o', sys.argv[1]]; from crashed.start import main\n"
    "try:\n    main()\nexcept SystemExit as exc:\n    raise SystemExit(exc.code)"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    project = bake_default()
    out = Path(tempfile.mkdtemp(prefix="hml-bench-out-")) / "crashed_pipeline.yaml"
    cold = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", COLD, str(out)], check=True, capture_output=True, cwd=project)
        cold.append(time.perf_counter() - started)
    sys.path.insert(0, str(project))
    from crashed.start import create_app  # noqa: E402 - the baked package, importable from its folder

    from hmlcore.pipelines.compiler import compile_pipeline

    pipeline = create_app().pipelines["crashed_pipeline"]
    started = time.perf_counter()
    compile_pipeline(pipeline)
    first = time.perf_counter() - started
    warm = []
    for _ in range(args.runs):
        pipeline._tasks = None
        started = time.perf_counter()
        compiled = compile_pipeline(pipeline, str(out))
        warm.append(time.perf_counter() - started)
    steps = len(compiled.spec["root"]["dag"]["tasks"])
    print(f"compile {steps}-step crashed_pipeline, cold CLI process: median {statistics.median(cold):.3f}s, max {max(cold):.3f}s")
    print(f"compile in process, first (imports kfp): {first:.3f}s; warm: median {statistics.median(warm):.3f}s over {args.runs} runs")
    print(f"spec size: {out.stat().st_size} bytes")
    shutil.rmtree(project.parent, ignore_errors=True)
    shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
