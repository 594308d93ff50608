"""Drop what the answers did not choose, pin the hmlcore of this bake, record its origin, print the next steps.

The pinning and the record are in ``hooks/origin.py``, imported from the template folder (cookiecutter and
cruft both render from one).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

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


def pin_hmlcore(context: dict, template_dir: Path, package_dir: Path) -> int:
    """Pin hmlcore in the Makefile and (unless it is a wheel) in pyproject.toml, and write ``.cruft.json`` (not when
    cruft bakes: it writes its own); return 0 or 1."""
    sys.path.insert(0, str(template_dir))
    from hooks.origin import WHEELS, OriginError, find_origin, pin, write_cruft_record, write_makefile_pin, write_pyproject_pin

    try:
        origin = find_origin(context["_template"], template_dir)
        requirement, message = pin(
            origin,
            template_dir=template_dir,
            package_dir=package_dir,
            platform=context["cluster_platform"],
            released=str(context.get("_hmlcore_released", "")).lower() in ("true", "yes", "1"),
        )
        write_makefile_pin(package_dir / "Makefile", requirement)
        if not requirement.startswith(f"{WHEELS}/"):
            write_pyproject_pin(package_dir / "pyproject.toml", requirement)
        if origin.commit and "_commit" not in context:
            write_cruft_record(package_dir, context, origin)
    except OriginError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    print(message, file=sys.stderr if message.startswith("WARNING") else sys.stdout)
    return 0


def main() -> int:
    # The quotes must stay ''': tojson never writes an apostrophe, but it may write a double quote.
    # fmt: off
    context = json.loads(r'''{{ cookiecutter | tojson }}''')
    template_dir = json.loads(r'''{{ template_folder(cookiecutter._repo_dir | default("")) | tojson }}''')
    ci = json.loads(r'''{{ cookiecutter.ci | tojson }}''')
    slug = json.loads(r'''{{ cookiecutter.project_slug | tojson }}''')
    package = json.loads(r'''{{ cookiecutter.package_name | tojson }}''')
    pipeline = json.loads(r'''{{ cookiecutter.pipeline_name | tojson }}''')
    kind = json.loads(r'''{{ cookiecutter.model_kind | tojson }}''')
    # fmt: on
    remove_unchosen_ci(ci)
    remove_unused_data(kind, package)
    if pin_hmlcore(context, Path(template_dir), Path.cwd()):
        return 1
    steps = [
        (f"cd {slug}", ""),
        ("python -m venv .venv && . .venv/bin/activate", ""),
        ("make install", "the pinned hmlcore and this package"),
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
