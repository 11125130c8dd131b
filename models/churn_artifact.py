"""The churn model's artifact: one file, a JSON header line and then a joblib payload.

`save_model` writes a fitted `ChurnModel` atomically; the header (`ARTIFACT_FORMAT`, its
version, the scikit-learn, numpy and pandas versions, the classifier, calibration and features)
can be read without unpickling anything (`read_artifact_header`), so that `load_model` refuses
an artifact from an incompatible scikit-learn before it unpickles the payload. The payload
pickles `pulse.models.churn.ChurnModel` by that class path.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.utils.validation import check_is_fitted

from pulse.core.errors import ModelArtifactError
from pulse.models.churn import ChurnModel

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_FORMAT_VERSION",
    "load_model",
    "read_artifact_header",
    "save_model",
]

ARTIFACT_FORMAT = "pulse.churn-model"
ARTIFACT_FORMAT_VERSION = 1


def save_model(model: ChurnModel, path: str | os.PathLike[str], *,
               metadata: dict[str, Any] | None = None) -> Path:
    """Write the fitted model to `path` (a JSON header line, then a joblib payload).

    The header records the scikit-learn, numpy and pandas versions, so that `load_model` can
    refuse an artifact from an incompatible scikit-learn before unpickling anything.

    Parameters
    ----------
    model : ChurnModel
        The fitted model.
    path : str or PathLike
        Destination file; written atomically (a temporary file, then a rename).
    metadata : dict, default=None
        JSON-ready facts about the fit stored in the header under ``metadata`` (for the
        registry: the snapshots it was fitted on, its horizon, how it was chosen).

    Returns
    -------
    path : Path
        The file written.
    """
    check_is_fitted(model)
    path = Path(path)
    header = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_FORMAT_VERSION,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "classifier": model.classifier,
        "calibration": model.calibration,
        "features": model.features_,
        "metadata": metadata or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(json.dumps(header).encode() + b"\n")
            joblib.dump(model, fh, compress=3)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_model(path: str | os.PathLike[str]) -> ChurnModel:
    """Read a model written by `save_model`.

    Only load artifacts you trust: the payload is a pickle.

    Parameters
    ----------
    path : str or PathLike
        File written by `save_model`.

    Returns
    -------
    model : ChurnModel
        The fitted model.

    Raises
    ------
    ModelArtifactError
        The file is missing, is not a churn model artifact, or was written by a
        scikit-learn whose major.minor version differs from the installed one.
    """
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ModelArtifactError(f"cannot read model artifact {path}: {exc.strerror}") from exc
    with fh:
        header = read_artifact_header(path, fh)
        saved = str(header.get("sklearn_version"))
        if _minor(saved) != _minor(sklearn.__version__):
            raise ModelArtifactError(
                f"model artifact {path} was saved with scikit-learn {saved}, which the "
                f"installed scikit-learn {sklearn.__version__} cannot load safely: expected "
                f"an artifact from {_minor(sklearn.__version__)}.x; retrain the model, or "
                f"load it where scikit-learn {_minor(saved)}.x is installed")
        try:
            model = joblib.load(fh)
        except Exception as exc:
            raise ModelArtifactError(
                f"cannot unpickle model artifact {path}: {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(model, ChurnModel):
        raise ModelArtifactError(
            f"model artifact {path} holds a {type(model).__name__}, expected {ChurnModel.__name__}")
    return model


def read_artifact_header(path: str | os.PathLike[str], fh: Any = None) -> dict[str, Any]:
    """The JSON header of a saved model (versions, classifier, features), without unpickling.

    Parameters
    ----------
    path : str or PathLike
        File written by `save_model`.
    fh : binary file, default=None
        An open handle positioned at the start of the file; it is left just after the header.

    Returns
    -------
    header : dict
        ``format``, ``format_version``, ``sklearn_version``, ``numpy_version``,
        ``pandas_version``, ``classifier``, ``calibration``, ``features`` and ``metadata``
        (empty for artifacts written without it).
    """
    if fh is None:
        try:
            with Path(path).open("rb") as own:
                return read_artifact_header(path, own)
        except OSError as exc:
            raise ModelArtifactError(f"cannot read model artifact {path}: {exc.strerror}") from exc
    line = fh.readline(1 << 20)
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != ARTIFACT_FORMAT:
        raise ModelArtifactError(
            f"{path} is not a churn model artifact: expected a first line with "
            f'"format": "{ARTIFACT_FORMAT}"')
    if header.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise ModelArtifactError(
            f"model artifact {path} has format version {header.get('format_version')!r}, "
            f"expected {ARTIFACT_FORMAT_VERSION}")
    return header


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])
