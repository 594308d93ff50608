"""Drop what the answers did not choose, then print the next steps."""

from __future__ import annotations

import json
import os
import shutil

CI_FILES = {"github": [".github"], "gitlab": [".gitlab-ci.yml"]}


def remove_unchosen_ci(ci: str, root: str = ".") -> list[str]:
    """Remove the CI configuration of every provider but ``ci``; return what was removed."""
    removed = []
    for provider, paths in CI_FILES.items():
        if provider == ci:
            continue
        for path in paths:
            full = os.path.join(root, path)
            if os.path.isdir(full):
                shutil.rmtree(full)
                removed.append(path)
            elif os.path.exists(full):
                os.remove(full)
                removed.append(path)
    return removed


def main() -> int:
    # The quotes must stay ''': tojson never writes an apostrophe, but it may write a double quote.
    # fmt: off
    ci = json.loads(r'''{{ cookiecutter.ci | tojson }}''')
    slug = json.loads(r'''{{ cookiecutter.project_slug | tojson }}''')
    package = json.loads(r'''{{ cookiecutter.package_name | tojson }}''')
    pipeline = json.loads(r'''{{ cookiecutter.pipeline_name | tojson }}''')
    # fmt: on
    remove_unchosen_ci(ci)
    steps = [
        (f"cd {slug}", ""),
        ("python -m venv .venv && . .venv/bin/activate", ""),
        ("make install", "hmlcore and this package (HMLCORE=<wheel or checkout> if hmlcore is not on your index)"),
        (f"{package} pipelines {pipeline} run-all", "train on the shipped data"),
        (f"{package} inference run-dev", "serve on http://127.0.0.1:8000/predict"),
        ("make test", "the package's own tests"),
    ]
    width = max(len(command) for command, _ in steps) + 2
    lines = [f"  {command:<{width}}{'# ' + note if note else ''}".rstrip() for command, note in steps]
    print(f"\nBaked {slug}. Next steps:\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
