"""A step's values on the command line, rendered and parsed the way Kubeflow passes them.

Kubeflow keeps a step's parameters as protobuf values (numbers as doubles) and renders them into the
container's command line as JSON; a step's output file is parsed back the same way. ``run-all`` and a step's
CLI use these functions so that a value reaches a step on a laptop exactly as it does in the cluster.

Example:
    >>> render_value([1.0, 2.5], list), parse_value("[1,2.5]", list)
    ('[1,2.5]', [1, 2.5])
"""

from __future__ import annotations

import json
import math
from typing import Any

from hmlcore.errors import PipelineError

__all__ = ["KFP_TYPES", "MAX_EXACT_INT", "parse_value", "render_output", "render_value"]

#: the types an op's parameters and return value may have, and their KFP v1-YAML type names
KFP_TYPES: dict[type, str] = {str: "String", int: "Integer", float: "Float", bool: "Boolean", list: "JsonArray", dict: "JsonObject"}


def render_value(value: Any, kind: type | None) -> str:
    """Render ``value`` the way Kubeflow renders a parameter into a command line.

    Kubeflow keeps parameters as protobuf values, whose numbers are all doubles, and renders them as
    JSON: a whole number inside a list or dict comes out without a fraction (``[1, 2]``, not ``[1.0, 2.0]``).

    Example:
        >>> render_value({"w": [1.0, 2.5], "ok": True}, dict), render_value(True, bool), render_value(4.0, int)
        ('{"w":[1,2.5],"ok":true}', 'true', '4')
    """
    if isinstance(value, bool) or kind is bool:
        return "true" if _parse_bool(value) else "false"
    if kind is int and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(_as_protobuf_json(value), separators=(",", ":"))
    return str(value)


#: the largest integer a protobuf Value (a double) holds exactly: Kubeflow keeps every parameter as one
MAX_EXACT_INT = 2**53


def render_output(value: Any, kind: type, *, step: str) -> str:
    """Render a step's return value for its output file, refusing what Kubeflow's launcher cannot parse.

    The launcher turns the file into a protobuf ``Value``: it refuses ``NaN`` and ``Infinity`` (the step
    would fail after its container exited 0) and stores numbers as doubles (an integer above 2**53
    would silently change). Both are refused here, so ``run-all`` fails the way the cluster would.

    Example:
        >>> render_output({"auc": 0.9, "n": [1, 2]}, dict, step="evaluate")
        '{"auc":0.9,"n":[1,2]}'
        >>> render_output({"auc": float("nan")}, dict, step="evaluate")
        Traceback (most recent call last):
        ...
        hmlcore.errors.PipelineError: step evaluate: output['auc'] is nan, which Kubeflow cannot pass: return a number or None

    Raises:
        PipelineError: the value holds NaN, an infinity or an integer Kubeflow would round (the message
            names the step and the key).
    """
    _check_passable(value, step, "output")
    return render_value(value, kind)


def _check_passable(value: Any, step: str, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PipelineError(f"step {step}: {where} is {value}, which Kubeflow cannot pass: return a number or None")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EXACT_INT:
        raise PipelineError(
            f"step {step}: {where} is {value}, above 2**53, which Kubeflow would round (it keeps numbers as doubles): return it as a string"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_passable(item, step, f"{where}[{str(key)!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_passable(item, step, f"{where}[{index}]")


def _as_protobuf_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _as_protobuf_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_protobuf_json(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def parse_value(text: str, kind: type) -> Any:
    """Parse a command-line string into ``kind``; raise ValueError with a readable message."""
    if kind is str:
        return text
    if kind is bool:
        return _parse_bool(text)
    if kind is int:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not number.is_integer():
            raise ValueError(f"{text!r} is not a whole number")
        return int(number)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not valid JSON") from exc
    if not isinstance(value, kind):
        raise ValueError(f"{text!r} is not a JSON {'array' if kind is list else 'object'}")
    return value
