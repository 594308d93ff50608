"""`python -m hmlcore.requirements`: what a baked package's image installs, hmlcore taken from its wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hmlcore.requirements import RequirementsError, image_requirements

PACKAGE_REQUIRES = [
    "hmlcore[s3] @ git+https://github.com/acme/hml-template.git@" + "a" * 40,
    "pandas>=2.1",
    "uvicorn[standard]>=0.30",
    "xgboost-cpu>=2.1; sys_platform != 'darwin'",
    'xgboost>=2.1; sys_platform == "darwin"',
    'pytest>=8; extra == "test"',
    'hmlcore[gcp]; extra == "gcp"',
]


def wheel(folder: Path, name: str, requires: list[str]) -> Path:
    """A wheel holding only its METADATA, with these Requires-Dist lines."""
    path = folder / f"{name}-0.1.0-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-0.1.0.dist-info/METADATA", metadata)
    return path


def test_hmlcore_comes_from_its_wheel_with_the_packages_extras_and_the_other_requirements_keep_their_markers(tmp_path: Path):
    (tmp_path / "hmlcore").mkdir()
    hmlcore = wheel(tmp_path / "hmlcore", "hmlcore", ["pandas>=2"])
    package = wheel(tmp_path, "crashed", PACKAGE_REQUIRES)

    assert image_requirements(package, hmlcore, relative_to=tmp_path) == [
        "./hmlcore/hmlcore-0.1.0-py3-none-any.whl[s3]",
        "pandas>=2.1",
        "uvicorn[standard]>=0.30",
        "xgboost-cpu>=2.1; sys_platform != 'darwin'",
        'xgboost>=2.1; sys_platform == "darwin"',
    ]


def test_the_cli_writes_the_file_beside_the_package_wheel_and_refuses_a_package_without_hmlcore(tmp_path: Path):
    hmlcore = wheel(tmp_path, "hmlcore", [])
    package = wheel(tmp_path, "crashed", ["HmlCore==0.1.0", "numpy>=1.26"])
    done = subprocess.run([sys.executable, "-m", "hmlcore.requirements", str(package), str(hmlcore)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "requirements.txt").read_text().splitlines()
    assert lines[0].startswith("#") and lines[1:] == ["./hmlcore-0.1.0-py3-none-any.whl", "numpy>=1.26"]

    other = wheel(tmp_path, "other", ["numpy>=1.26"])
    done = subprocess.run([sys.executable, "-m", "hmlcore.requirements", str(other), str(hmlcore)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "does not require hmlcore" in done.stderr
    with pytest.raises(RequirementsError, match="no-such.whl"):
        image_requirements(package, tmp_path / "no-such.whl", relative_to=tmp_path)
