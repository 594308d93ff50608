"""Drop what the answers did not choose, then print the next steps."""

from __future__ import annotations

import json
import os
import shutil

CI_FILES = {"github": [".github"], "gitlab": [".gitlab-ci.yml"]}
#: the sample data each model kind trains on, under the package's data/ folder
KIND_DATA = {"binary": "nass_cds.csv.gz", "multiclass": "penguins.csv.gz", "regression": "diamonds.csv.gz"}


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


def remove_unused_data(kind: str, package: str, root: str = ".") -> list[str]:
    """Remove the sample data of every model kind but ``kind``; return what was removed."""
    removed = []
    for other, name in KIND_DATA.items():
        path = os.path.join(root, package, "data", name)
        if other != kind and os.path.exists(path):
            os.remove(path)
            removed.append(f"{package}/data/{name}")
    return removed


def main() -> int:
    # The quotes must stay ''': tojson never writes an apostrophe, but it may write a double quote.
    # fmt: off
    ci = json.loads(r'''{{ cookiecutter.ci | tojson }}''')
    slug = json.loads(r'''{{ cookiecutter.project_slug | tojson }}''')
    package = json.loads(r'''{{ cookiecutter.package_name | tojson }}''')
    pipeline = json.loads(r'''{{ cookiecutter.pipeline_name | tojson }}''')
    kind = json.loads(r'''{{ cookiecutter.model_kind | tojson }}''')
    # fmt: on
    remove_unchosen_ci(ci)
    remove_unused_data(kind, package)
    steps = [
        (f"cd {slug}", ""),
        ("python -m venv .venv && . .venv/bin/activate", ""),
        ("make install", "hmlcore and this package (HMLCORE=<wheel or checkout> if hmlcore is not on your index)"),
        (f"{package} pipelines {pipeline} run-all", f"train a {kind} model on the shipped data"),
        (f"{package} inference run-dev", "serve on http://127.0.0.1:8000/predict"),
        ("make test", "the package's own tests"),
    ]
    width = max(len(command) for command, _ in steps) + 2
    lines = [f"  {command:<{width}}{'# ' + note if note else ''}".rstrip() for command, note in steps]
    print(f"\nBaked {slug}. Next steps:\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
