"""CPU and memory requests and limits, checked once for the inference Deployment and the pipeline steps.

Kubernetes writes them as quantities (``"500m"``, ``"2"``, ``"512Mi"``, ``"1e3"``). The grammar is checked
here, because the ``kubernetes`` client's parser also accepts ``"-1"``, ``"NaN"`` or ``"1ni"``, which the API
server refuses; the amount is then read by :func:`kubernetes.utils.parse_quantity`.

Example:
    >>> float(parse_quantity("500m")), int(parse_quantity("1Gi"))
    (0.5, 1073741824)
    >>> merge_resources({}, cpu_request="250m", memory_limit="1Gi")
    {'requests': {'cpu': '250m'}, 'limits': {'memory': '1Gi'}}
"""

from __future__ import annotations

import re
from decimal import Decimal

from hmlcore.errors import ConfigError

__all__ = ["check_quantity", "merge_resources", "parse_quantity"]

_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")


def parse_quantity(value: object) -> Decimal:
    """The amount a Kubernetes resource quantity (``"250m"``, ``"1Gi"``, ``"2"``, ``"1e3"``) stands for.

    Raises:
        ConfigError: ``value`` is not a non-negative Kubernetes quantity.
    """
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _QUANTITY.match(text):
        raise ConfigError(f"invalid resource quantity {value!r}: use a number with an optional suffix, like 500m, 2, 512Mi or 1Gi")
    # the kubernetes package loads its whole client on import: only when a quantity is read, never for --help
    from kubernetes.utils import parse_quantity as amount

    return Decimal(amount(text))


def check_quantity(value: object, what: str) -> str:
    """Return ``value`` as the string Kubernetes expects if it is a valid quantity, else raise ConfigError.

    Only the grammar is checked (the amount is read only to compare a request with its limit), so
    configuring a step does not load the ``kubernetes`` package (a third of a second).
    """
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _QUANTITY.match(text):
        raise ConfigError(f"{what}: invalid resource quantity {value!r}: use a number with an optional suffix, like 500m, 2, 512Mi or 1Gi")
    return text


def merge_resources(
    current: dict[str, dict[str, str]],
    *,
    cpu_request: object = None,
    cpu_limit: object = None,
    memory_request: object = None,
    memory_limit: object = None,
) -> dict[str, dict[str, str]]:
    """``current`` (``{"requests": {...}, "limits": {...}}``) with the given values set, each one checked.

    Raises:
        ConfigError: a value is not a quantity, or a request is more than its limit.
    """
    merged = {kind: dict(current.get(kind) or {}) for kind in ("requests", "limits")}
    given = {("requests", "cpu"): cpu_request, ("limits", "cpu"): cpu_limit}
    given.update({("requests", "memory"): memory_request, ("limits", "memory"): memory_limit})
    for (kind, resource), value in given.items():
        if value is not None:
            merged[kind][resource] = check_quantity(value, f"{resource} {kind[:-1]}")
    for resource in ("cpu", "memory"):
        request, limit = merged["requests"].get(resource), merged["limits"].get(resource)
        if request and limit and parse_quantity(request) > parse_quantity(limit):
            raise ConfigError(f"{resource} request {request} is more than its limit {limit}")
    return merged
