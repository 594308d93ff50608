"""Where a bake came from, and the exact hmlcore it pins: the post-gen hook's logic, importable and tested.

A bake from a git URL (``gh:org/hml-template``, ``git+https://…``, ``git+file://…``) pins
``hmlcore @ git+<URL>@<commit>``: the commit cookiecutter (or cruft) checked out. A bake of a released
version pins ``hmlcore==<version>`` once releases go to the package index (``_hmlcore_released`` in
cookiecutter.json). A bake from a local folder pins a wheel built from that folder into the package's
``wheels/``: never a bare ``hmlcore`` from an index, whose name anyone may register.

The pin is the default of ``HMLCORE`` in the baked Makefile, which ``make install``, ``make wheels`` (the
image's input) and both CI configurations use. pyproject.toml names the same requirement (the git commit, or
the release), so that a plain ``pip install .`` gets that hmlcore too; for a wheel, which PEP 508 can name only
by an absolute URL, it names the wheel's exact version and the Makefile says where pip finds it. The bake's
origin goes to ``.cruft.json`` in cruft's format, so that ``make update`` (cruft) can merge a newer
template into the package later.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: a template given as a URL or a cookiecutter abbreviation (gh:, gl:, bb:), not as a folder
URLISH = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:|[\w.-]+@[\w.-]+:)")
#: an scp-like git address, user@host:path
SCP_LIKE = re.compile(r"^(?P<user>[\w.-]+)@(?P<host>[\w.-]+):(?P<path>[^/].*)$")
#: a git URL safe to write into a Makefile, a shell word and TOML: nothing make or a shell reads specially
SAFE_URL = re.compile(r"^(https?|ssh|git|file)://[A-Za-z0-9._~:/%@+-]+$")
COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$")
#: the Makefile line the pin replaces (rendered by the template as the released form)
MAKEFILE_PIN = re.compile(r"^HMLCORE(\s*)\?= .*$", re.M)
#: pyproject.toml's hmlcore dependency as the template renders it: hmlcore[<platform>]==<version>
PYPROJECT_PIN = re.compile(r'^(?P<indent>[ ]*)"hmlcore\[[a-z0-9]+\]==[0-9A-Za-z.+-]+",$', re.M)
WHEELS = "wheels"


class OriginError(Exception):
    """Raised if the template's origin cannot be pinned safely; the message says what to do instead."""


@dataclass(frozen=True)
class Origin:
    """Where the template of a bake came from.

    Attributes:
        url: The git URL to clone it again (credentials removed), or the folder's absolute path for a local bake.
        commit: The commit baked, or None if the template is not a git repository.
        local: True if the template was a folder on this machine, not a URL.
        dirty: True if that folder is not a clean git checkout (uncommitted changes, or no git at all).
        tag: The tag at the commit baked (e.g. ``v0.2.0``), or None.
    """

    url: str
    commit: str | None
    local: bool
    dirty: bool
    tag: str | None = None


def _git(folder: Path, *args: str) -> str | None:
    """``git -C folder args`` 's output, stripped, or None if git fails or is missing."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def clean_url(url: str) -> str:
    """``url`` as pip and git both read it: no ``git+`` prefix, scp-like addresses as ssh://, no password or token.

    Example:
        >>> clean_url("git+https://user:secret@github.com/acme/hml-template.git")
        'https://github.com/acme/hml-template.git'
        >>> clean_url("git@github.com:acme/hml-template.git")
        'ssh://git@github.com/acme/hml-template.git'
    """
    scp = SCP_LIKE.match(url)
    if scp and "://" not in url:
        url = f"ssh://{scp['user']}@{scp['host']}/{scp['path']}"
    if url.startswith("git+"):
        url = url[len("git+") :]
    parts = urlsplit(url)
    if parts.password is not None or (parts.username and parts.scheme in ("http", "https")):
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        if parts.scheme not in ("http", "https") and parts.username:
            netloc = f"{parts.username}@{netloc}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def find_origin(template: str, template_dir: Path) -> Origin:
    """Where the template being baked came from.

    Args:
        template: The template as given to cookiecutter (``_template``) or recorded by cruft.
        template_dir: The folder the files are rendered from: cookiecutter's clone, cruft's, or the user's folder.

    Returns:
        The origin: a git URL and commit for a template given as a URL, else the local folder and its state.
    """
    inside = _git(template_dir, "rev-parse", "--show-toplevel")
    commit = _git(template_dir, "rev-parse", "HEAD") if inside else None
    tag = _git(template_dir, "describe", "--tags", "--exact-match", "HEAD") if commit else None
    if URLISH.match(template) and commit:
        remote = _git(template_dir, "remote", "get-url", "origin") or template
        return Origin(url=clean_url(remote), commit=commit, local=False, dirty=False, tag=tag or None)
    status = _git(template_dir, "status", "--porcelain") if commit else None
    dirty = commit is None or status is None or status != ""
    return Origin(url=str(template_dir.resolve()), commit=commit, local=True, dirty=dirty, tag=tag or None)


def hmlcore_version(template_dir: Path) -> str:
    """hmlcore's version in ``template_dir``, read from ``hmlcore/_version.py`` without importing it."""
    text = (template_dir / "hmlcore" / "_version.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"$', text, flags=re.M)
    if not found or not VERSION.fullmatch(found.group(1)):
        raise OriginError(f'{template_dir / "hmlcore" / "_version.py"} names no version like __version__ = "0.1.0"')
    return found.group(1)


def git_requirement(origin: Origin, platform: str) -> str:
    """The pip requirement of hmlcore at ``origin``'s commit, with the extra of the cluster's ``platform``.

    Example:
        >>> git_requirement(Origin("https://github.com/acme/hml-template.git", "a" * 40, False, False), "s3")
        'hmlcore[s3] @ git+https://github.com/acme/hml-template.git@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
    """
    if not SAFE_URL.fullmatch(origin.url):
        raise OriginError(
            f"the template URL {origin.url!r} holds characters a Makefile or a shell reads specially (or is not a git URL): "
            "bake from a plain https://, ssh:// or file:// URL"
        )
    if not origin.commit or not COMMIT.fullmatch(origin.commit):
        raise OriginError(f"the template at {origin.url!r} has no commit to pin: bake from a git repository")
    return f"hmlcore[{platform}] @ git+{origin.url}@{origin.commit}"


def build_wheel(template_dir: Path, destination: Path) -> Path:
    """Build hmlcore's wheel from ``template_dir`` into ``destination``; return the wheel's path.

    The build runs on a copy of the library's files, so the user's folder gets no build/ or egg-info.
    """
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hmlcore-wheel-") as scratch:
        source = Path(scratch) / "hmlcore-src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (template_dir / name).exists():
                shutil.copy2(template_dir / name, source / name)
        shutil.copytree(template_dir / "hmlcore", source / "hmlcore", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(destination), str(source)]
        if _can_build_in_place():
            command.insert(5, "--no-build-isolation")
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise OriginError(f"pip could not build hmlcore's wheel from {template_dir}: {last}")
    wheels = sorted(destination.glob("hmlcore-*.whl"))
    if not wheels:
        raise OriginError(f"pip built no hmlcore wheel from {template_dir}")
    return wheels[-1]


def _can_build_in_place() -> bool:
    """True if this Python has the build backend hmlcore needs (setuptools>=77 and wheel): no isolated build then."""
    from importlib import metadata

    try:
        major = int(metadata.version("setuptools").split(".")[0])
        metadata.version("wheel")
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return major >= 77


def pin(origin: Origin, *, template_dir: Path, package_dir: Path, platform: str, released: bool) -> tuple[str, str]:
    """Decide the pin of hmlcore for a bake, building the wheel a local bake needs.

    Args:
        origin: Where the template came from.
        template_dir: The folder the files are rendered from.
        package_dir: The baked package (a local bake's wheel goes to its ``wheels/``).
        platform: The cluster platform, whose extra hmlcore is installed with.
        released: True once hmlcore's releases are on the package index: a bake of the tag ``v<version>`` then
            pins ``hmlcore==<version>``.

    Returns:
        ``(requirement, message)``: the ``HMLCORE`` default for the Makefile, and one line to tell the user.
    """
    version = hmlcore_version(template_dir)
    if not origin.local:
        if released and origin.tag == f"v{version}":
            return f"hmlcore[{platform}]=={version}", f"hmlcore is pinned to the release {version} on your package index"
        return git_requirement(origin, platform), f"hmlcore is pinned to {origin.url} at {origin.commit}"
    wheel = build_wheel(template_dir, package_dir / WHEELS)
    relative = f"{WHEELS}/{wheel.name}"
    if origin.dirty:
        state = "has uncommitted changes" if origin.commit else "is not a git checkout"
        message = (
            f"WARNING: the template folder {origin.url} {state}: hmlcore is pinned to {relative}, a wheel built from it; "
            "bake from the template's git URL to pin a commit instead"
        )
    else:
        message = (
            f"baked from the folder {origin.url}: hmlcore is pinned to {relative}, built from its commit {origin.commit}; "
            "bake from the template's git URL to pin the commit instead"
        )
    return relative, message


def write_makefile_pin(makefile: Path, requirement: str) -> None:
    """Set the ``HMLCORE ?=`` default of the baked Makefile to ``requirement`` (a safe URL or a relative path)."""
    if any(char in requirement for char in "#$\\\n'\"`;"):
        raise OriginError(f"the hmlcore requirement {requirement!r} holds characters make or a shell reads specially")
    text = makefile.read_text(encoding="utf-8")
    updated, count = MAKEFILE_PIN.subn(lambda match: f"HMLCORE{match.group(1)}?= {requirement}", text, count=1)
    if count != 1:
        raise OriginError(f"{makefile} has no 'HMLCORE ?= ...' line to pin hmlcore in")
    makefile.write_text(updated, encoding="utf-8")


def write_pyproject_pin(pyproject: Path, requirement: str) -> None:
    """Make ``requirement`` (``hmlcore[...] @ git+<url>@<commit>`` or ``hmlcore[...]==<version>``) the hmlcore
    dependency in the baked pyproject.toml, written as a TOML string and checked by parsing the file back."""
    if not requirement.startswith("hmlcore[") or any(char in requirement for char in "\\\n\"'`"):
        raise OriginError(f"the hmlcore requirement {requirement!r} cannot go into pyproject.toml")
    text = pyproject.read_text(encoding="utf-8")
    before = tomllib.loads(text)
    updated, count = PYPROJECT_PIN.subn(lambda match: f"{match.group('indent')}{json.dumps(requirement)},", text, count=1)
    if count != 1:
        raise OriginError(f'{pyproject} has no dependency line like "hmlcore[s3]==0.1.0", to pin hmlcore in')
    after = tomllib.loads(updated)
    dependencies = before["project"]["dependencies"]
    index = next(i for i, line in enumerate(dependencies) if line.startswith("hmlcore["))
    before["project"]["dependencies"] = [*dependencies[:index], requirement, *dependencies[index + 1 :]]
    if after != before:
        raise OriginError(f"pinning {requirement!r} in {pyproject} would change more than its hmlcore dependency")
    pyproject.write_text(updated, encoding="utf-8")


def cruft_record(context: dict, origin: Origin) -> dict:
    """``.cruft.json``'s content for a bake: the template URL, the commit and the answers, in cruft's format.

    Args:
        context: cookiecutter's context of the bake (the answers and cookiecutter's own ``_`` keys).
        origin: Where the template came from; its commit must be known.
    """
    answers = {key: value for key, value in context.items() if not key.startswith("_")}
    for key in ("_copy_without_render", "_extensions"):
        if key in context:
            answers[key] = context[key]
    answers["_template"] = origin.url
    answers["_commit"] = origin.commit
    checkout = context.get("_checkout") or None
    return {"template": origin.url, "commit": origin.commit, "checkout": checkout, "context": {"cookiecutter": answers}, "directory": None}


def write_cruft_record(package_dir: Path, context: dict, origin: Origin) -> None:
    """Write ``.cruft.json`` into ``package_dir`` as cruft itself writes it (two-space JSON, a final newline)."""
    text = json.dumps(cruft_record(context, origin), ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    (package_dir / ".cruft.json").write_text(text, encoding="utf-8")
