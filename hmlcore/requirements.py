"""The requirements an image installs a baked package with: hmlcore from its wheel, then the package's others.

A baked package may name hmlcore by a git URL (``hmlcore[s3] @ git+https://…@<commit>``), which a container
build must not fetch, and which pip refuses beside a wheel of hmlcore (two URLs for one name). ``make wheels``
therefore writes the hmlcore wheel (built on the host from the Makefile's pin), the package's wheel and a
requirements file from this module::

    python -m hmlcore.requirements build/wheels/crashed-0.1.0-py3-none-any.whl build/wheels/hmlcore-0.1.0-py3-none-any.whl

The file names hmlcore's wheel by its path, with the extras the package asks hmlcore for, then every other
requirement of the package as its wheel's metadata declares it (markers and extras kept, the optional ones left
out). The image installs those, then the package's wheel without its dependencies.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zipfile
from collections.abc import Sequence
from email.parser import Parser
from pathlib import Path

from hmlcore.errors import HmlError

__all__ = ["RequirementsError", "image_requirements", "main", "requires_dist"]

#: the name and the extras at the start of a requirement (PEP 508)
_NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[(?P<extras>[^\]]*)\])?")
#: a marker that depends on the extras asked for: the requirement is optional
_EXTRA_MARKER = re.compile(r"\bextra\s*(==|!=|\bin\b|\bnot\s+in\b)")


class RequirementsError(HmlError):
    """Raised if a wheel's requirements cannot be read or hold no hmlcore; the message names the wheel."""


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requires_dist(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of ``wheel``'s metadata, as written.

    Raises:
        RequirementsError: ``wheel`` is no readable wheel, or has no METADATA.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [name for name in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", name)]
            if len(names) != 1:
                raise RequirementsError(f"{wheel} holds no *.dist-info/METADATA: is it a wheel?")
            text = archive.read(names[0]).decode("utf-8")
    except (OSError, zipfile.BadZipFile) as error:
        raise RequirementsError(f"cannot read the wheel {wheel}: {error}") from error
    return [line.strip() for line in Parser().parsestr(text).get_all("Requires-Dist") or []]


def image_requirements(package_wheel: Path, hmlcore_wheel: Path, *, relative_to: Path) -> list[str]:
    """The requirements to install ``package_wheel`` with, hmlcore taken from ``hmlcore_wheel``.

    Args:
        package_wheel: The baked package's wheel.
        hmlcore_wheel: The hmlcore wheel to install instead of the package's own hmlcore requirement.
        relative_to: The folder the requirements file is read from: hmlcore's wheel is named relative to it.

    Returns:
        First ``./<hmlcore wheel>[<extras>]`` (the extras of the package's hmlcore requirement), then every other
        requirement the package always needs, markers and extras as declared; optional ones (``extra == …``) left out.

    Raises:
        RequirementsError: A wheel cannot be read, or the package does not require hmlcore.

    Example:
        A package that requires ``hmlcore[s3] @ git+https://…``, ``pandas>=2.1`` and ``pytest; extra == "test"``
        gives ``["./hmlcore-0.1.0-py3-none-any.whl[s3]", "pandas>=2.1"]``.
    """
    extras: str | None = None
    others = []
    for line in requires_dist(package_wheel):
        found = _NAME.match(line)
        marker = line.split(";", 1)[1] if ";" in line else ""
        if found is None or _EXTRA_MARKER.search(marker):
            continue
        if _normalized(found.group("name")) == "hmlcore":
            extras = ",".join(sorted(extra.strip() for extra in (found.group("extras") or "").split(",") if extra.strip()))
        else:
            others.append(line)
    if extras is None:
        raise RequirementsError(f"{package_wheel} does not require hmlcore: is it a baked package's wheel?")
    requires_dist(hmlcore_wheel)  # a readable wheel, or a one-line error now rather than in the image build
    path = Path(os.path.relpath(hmlcore_wheel, relative_to)).as_posix()
    return [f"./{path}" + (f"[{extras}]" if extras else ""), *others]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hmlcore.requirements PACKAGE_WHEEL HMLCORE_WHEEL [-o FILE]``: write the image's requirements."""
    parser = argparse.ArgumentParser(prog="python -m hmlcore.requirements", description=__doc__.splitlines()[0])
    parser.add_argument("package_wheel", type=Path, help="the baked package's wheel")
    parser.add_argument("hmlcore_wheel", type=Path, help="the hmlcore wheel the image installs")
    parser.add_argument("-o", "--output", type=Path, help="the file to write (default: requirements.txt beside the package wheel)")
    args = parser.parse_args(argv)
    output = args.output or args.package_wheel.parent / "requirements.txt"
    try:
        lines = image_requirements(args.package_wheel, args.hmlcore_wheel, relative_to=output.parent)
    except RequirementsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    header = f"# hmlcore from its wheel, then {args.package_wheel.name}'s other requirements (python -m hmlcore.requirements)"
    output.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
