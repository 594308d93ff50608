"""Model files that cannot run code when they are loaded.

:func:`dump_model` turns a trained model into ``(bytes, format)`` and :func:`load_model` turns them back:

- ``xgboost:<Class>``: an XGBoost scikit-learn estimator (``XGBClassifier``, ``XGBRegressor``,
  ``XGBRFClassifier``, ``XGBRFRegressor``) in XGBoost's own UBJSON format, restored into the same
  wrapper class (the class comes from a fixed table, never from the file);
- ``skops``: any other scikit-learn estimator or pipeline, through `skops <https://skops.readthedocs.io>`_,
  which loads only types it trusts (numpy, scikit-learn's estimators, and the few data-only types listed
  in :data:`SKOPS_TRUSTED`);
- ``joblib``: a pickle. Loading a pickle runs whatever code it names, so it is written and read only
  when the caller opts in: ``allow_pickle=True`` or the environment variable ``HML_ALLOW_PICKLE=1``
  (:data:`ALLOW_PICKLE_ENV`). Without it a pickle is refused before a byte of it is unpickled.

A model a safe format cannot hold (e.g. a pipeline ending in an XGBoost estimator, or a class of your own)
is refused at dump time, with the types skops would not trust, so that no unloadable model is published.

Example:
    >>> from sklearn.linear_model import LinearRegression
    >>> data, fmt = dump_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0]))
    >>> fmt
    'skops'
    >>> round(float(load_model(data, fmt).predict([[2.0]])[0]), 6)
    4.0
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

from hmlcore import _env
from hmlcore.errors import ModelLoadError, UntrustedModelError

__all__ = ["ALLOW_PICKLE_ENV", "FORMATS", "SKOPS_TRUSTED", "XGBOOST_CLASSES", "dump_model", "load_model", "pickle_allowed"]

#: the environment variable that allows pickled (joblib) models: ``1``, ``true`` or ``yes``
ALLOW_PICKLE_ENV = _env.ALLOW_PICKLE.name
#: XGBoost's scikit-learn wrappers a model file may be restored into
XGBOOST_CLASSES = ("XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor")
#: every format :func:`load_model` reads
FORMATS = ("skops", "joblib", *(f"xgboost:{name}" for name in XGBOOST_CLASSES))
#: types skops does not trust by default but that hold only data: scikit-learn's tree structures (loaded by
#: skops's dedicated code) and numpy's dtype (e.g. ``SimpleImputer``'s fitted dtype)
SKOPS_TRUSTED = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
_OPT_IN = f"set {ALLOW_PICKLE_ENV}=1 (or pass allow_pickle=True) if you trust the file"


def pickle_allowed(allow_pickle: bool | None = None) -> bool:
    """Whether pickled models may be written and read: ``allow_pickle`` if given, else ``HML_ALLOW_PICKLE``."""
    if allow_pickle is not None:
        return allow_pickle
    return _env.ALLOW_PICKLE.get()


def dump_model(model: Any, *, allow_pickle: bool | None = None) -> tuple[bytes, str]:
    """The bytes of ``model`` and their format (one of :data:`FORMATS`): XGBoost's own, else skops.

    Args:
        model: a trained XGBoost scikit-learn estimator, or a scikit-learn estimator or pipeline.
        allow_pickle: fall back to a pickle (joblib) for a model no safe format can hold (default:
            ``HML_ALLOW_PICKLE``).

    Raises:
        UntrustedModelError: no safe format holds the model and pickles are not allowed (the message names
            the types skops would refuse).
        ModelLoadError: skops is not installed and the model is not an XGBoost estimator.
    """
    xgboost_class = _xgboost_class(model)
    if xgboost_class is not None:
        with tempfile.TemporaryDirectory(prefix="hml-model-") as folder:
            path = os.path.join(folder, "model.ubj")
            model.save_model(path)
            with open(path, "rb") as handle:
                return handle.read(), f"xgboost:{xgboost_class}"
    untrusted: list[str] = []
    try:
        import skops.io as sio
    except ImportError:
        if not pickle_allowed(allow_pickle):
            raise ModelLoadError(f"{type(model).__name__} models are stored with skops: pip install skops, or {_OPT_IN}") from None
    else:
        data = sio.dumps(model)
        untrusted = [name for name in sio.get_untrusted_types(data=data) if name not in SKOPS_TRUSTED]
        if not untrusted:
            return data, "skops"
    if not pickle_allowed(allow_pickle):
        raise UntrustedModelError(
            f"a {type(model).__name__} cannot be stored safely (skops does not trust {', '.join(untrusted)}): "
            f"use an XGBoost or scikit-learn model, or store it as a pickle: {_OPT_IN}"
        )
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue(), "joblib"


def load_model(data: bytes, fmt: str, *, allow_pickle: bool | None = None, source: str = "the model file") -> Any:
    """The model that :func:`dump_model` wrote as ``(data, fmt)``.

    Args:
        data: the model file's bytes.
        fmt: its format, one of :data:`FORMATS`.
        allow_pickle: read a ``joblib`` file (default: ``HML_ALLOW_PICKLE``); refused otherwise.
        source: how messages name the file (e.g. its URL).

    Raises:
        UntrustedModelError: ``fmt`` is ``joblib`` and pickles are not allowed, or a skops file holds a
            type skops does not trust; nothing of the file has been executed.
        ModelLoadError: ``fmt`` is unknown, or the file is not a valid model of its format.
    """
    if fmt not in FORMATS:
        raise ModelLoadError(f"{source} has format {fmt!r}; hmlcore reads {', '.join(FORMATS)}")
    try:
        if fmt.startswith("xgboost:"):
            import xgboost

            model = getattr(xgboost, fmt.split(":", 1)[1])()
            model.load_model(bytearray(data))
            return model
        if fmt == "skops":
            import skops.io as sio

            untrusted = [name for name in sio.get_untrusted_types(data=data) if name not in SKOPS_TRUSTED]
            if untrusted:
                raise UntrustedModelError(f"{source} holds types skops does not trust: {', '.join(untrusted)}; it was not loaded")
            return sio.loads(data, trusted=[*SKOPS_TRUSTED])
        if not pickle_allowed(allow_pickle):
            raise UntrustedModelError(f"{source} is a pickle, which runs code when loaded; it was not loaded: {_OPT_IN}")
        import joblib

        return joblib.load(io.BytesIO(data))
    except ModelLoadError:
        raise
    except ImportError as exc:
        raise ModelLoadError(f"{source} is in format {fmt!r}, which needs {exc.name or exc}: pip install it") from exc
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad model file
        raise ModelLoadError(f"{source} cannot be loaded as {fmt}: {type(exc).__name__}: {exc}") from exc


def _xgboost_class(model: Any) -> str | None:
    """The name of ``model``'s XGBoost wrapper class, if it is exactly one of :data:`XGBOOST_CLASSES`."""
    cls = type(model)
    if cls.__module__.split(".")[0] != "xgboost" or cls.__name__ not in XGBOOST_CLASSES:
        return None
    return cls.__name__
