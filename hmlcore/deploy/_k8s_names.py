"""Kubernetes names: sanitise the names hmlcore makes, refuse the ones a user gives wrongly (quantities: :mod:`hmlcore._resources`).

Example:
    >>> k8s_name("Car_Crashes", "inference")
    'car-crashes-inference'
"""

from __future__ import annotations

import hashlib
import re

from hmlcore.errors import ConfigError

__all__ = [
    "check_dns_label",
    "check_dns_subdomain",
    "check_label",
    "k8s_name",
]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_RULE = "at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def k8s_name(*parts: str, max_length: int = 63) -> str:
    """A DNS-1035 label made from ``parts``: the same parts always give the same name.

    Lower-cases, turns every other character into ``-``, starts with a letter (``hml-`` is put in front
    of a leading digit) and, past ``max_length``, keeps a prefix and adds 8 characters of a hash.

    Raises:
        ConfigError: nothing usable is left of ``parts``.
    """
    original = "-".join(str(p) for p in parts)
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", original.lower())).strip("-")
    if not name:
        raise ConfigError(f"cannot make a Kubernetes name from {original!r}: it has no letter or digit")
    if not name[0].isalpha():
        name = f"hml-{name}"
    if len(name) > max_length:
        digest = hashlib.sha256(original.encode()).hexdigest()[:8]
        name = f"{name[: max_length - 9].rstrip('-')}-{digest}"
    return name


def check_dns_label(value: object, what: str) -> str:
    """Return ``value`` if it is a DNS-1123 label (a volume or port name...), else raise ConfigError."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        raise ConfigError(f"{what} {value!r} is not a Kubernetes name: use lower-case letters, digits and '-', at most 63")
    return value


def check_dns_subdomain(value: object, what: str) -> str:
    """Return ``value`` if it is a DNS-1123 subdomain (a secret or service account name), else raise ConfigError."""
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ConfigError(f"{what} {value!r} is not a Kubernetes name: use lower-case letters, digits, '-' and '.', at most 253")
    return value


def check_label(key: object, value: object, what: str) -> tuple[str, str]:
    """Return ``(key, value)`` if they make a valid Kubernetes label (or node selector), else raise ConfigError."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{what} key {key!r} must be a non-empty string")
    prefix, _, name = key.rpartition("/")
    if prefix:
        check_dns_subdomain(prefix, f"{what} key prefix")
    if not name or len(name) > 63 or not _LABEL_VALUE.match(name):
        raise ConfigError(f"{what} key {key!r} is invalid: {_LABEL_RULE}")
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ConfigError(f"{what} value {value!r} is invalid: {_LABEL_RULE}")
    return key, value
