"""Reading bundle files on the board: a missing or corrupt file raises
:class:`BundleError` naming it (:mod:`dyfip.bundle`'s readers with the driver's error)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .. import bundle
from .errors import BundleError

T = TypeVar("T")
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


def file_field(data: dict[str, Any], key: str, path: Path, kind: Callable[[Any], T],
               default: T | None = None, hint: str = "") -> T:
    """``kind(data[key])`` of a file's field, ``default`` if absent (and not None);
    :class:`BundleError` naming ``path`` (and ``hint``: what to re-run) if it is missing or
    malformed."""
    tail = f": {hint}" if hint else ""
    if key not in data:
        if default is not None:
            return default
        raise BundleError(f"{path} has no field {key!r}{tail}")
    try:
        return kind(data[key])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path}: field {key!r} is malformed ({data[key]!r}: {exc}){tail}"
                          ) from exc


def field_at(data: dict[str, Any], dotted: str, path: Path, hint: str) -> Any:
    """The nested field ``dotted`` (``"stages.stage_b.layers"``) of a JSON object;
    :class:`BundleError` naming ``path`` and the field if it is missing."""
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise BundleError(f"{path} has no field {dotted!r}: {hint}")
        node = node[key]
    return node
