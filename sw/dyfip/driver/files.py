"""Reading bundle files on the board: a missing or corrupt file raises
:class:`BundleError` naming it (:mod:`dyfip.bundle`'s readers with the driver's error)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .. import bundle
from .errors import BundleError

AS_BUNDLE_ERROR = {"corrupt": BundleError, "missing": BundleError}


def read_json(path: Path, hint: str) -> dict[str, Any]:
    """A JSON object file."""
    data = bundle.read_json(path, hint, **AS_BUNDLE_ERROR)
    if not isinstance(data, dict):
        raise BundleError(f"{path} is corrupt (a JSON {type(data).__name__}, not an object): "
                          f"{hint}")
    return data


def read_npz(path: Path, hint: str, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (no pickles); with ``keys`` only those it has."""
    return bundle.read_npz(path, hint, keys, **AS_BUNDLE_ERROR)


def read_bytes(path: Path, hint: str) -> bytes:
    """A file's raw content (for digests)."""
    return bundle.read_file(path, Path.read_bytes, hint, **AS_BUNDLE_ERROR)


def json_field(data: dict[str, Any], key: str, path: Path,
               kind: type | tuple[type, ...] = object, hint: str = "", **default: Any) -> Any:
    """Field ``key`` (dotted when nested) of a bundle file's JSON object, of type ``kind``
    (``default=...`` when absent); :class:`BundleError` naming ``path``, the field and
    ``hint`` (what to re-run) if it is missing or malformed (:func:`dyfip.bundle.json_field`)."""
    return bundle.json_field(data, key, path, kind, hint, error=BundleError, **default)
