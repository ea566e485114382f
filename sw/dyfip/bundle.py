"""The deployment bundle: one folder per build, every file written atomically.

numpy-only, so the board driver can use it.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

T = TypeVar("T")

# file names inside a bundle
CONFIG = "config.json"
CHECKPOINT = "model.pt"
FINETUNED = "stage_b_{method}.pt"
IMPORTANCE = "importance.npz"
TABLES = "tables.npz"
BRANCH = "branch.npz"
REFERENCE = "reference.npz"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FOLDING = "folding.json"  # the FINN folding the tables, fine-tunes and cycles were made for


def _file_mode() -> int:
    """The mode ``open()`` gives a new file under the process umask (mkstemp's is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()  # read once: os.umask is process-wide, not thread-safe


_DEFERRED: ContextVar[list[tuple[str, Path]] | None] = ContextVar("deferred", default=None)


def atomic_write_with(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file,
    and the file gets the usual permissions (a bundle is shared and copied to boards).
    Inside :func:`written_together` the rename waits for the end of the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        if (deferred := _DEFERRED.get()) is not None:
            deferred.append((tmp, path))
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    if os.path.exists(tmp):
        os.unlink(tmp)


@contextlib.contextmanager
def written_together() -> Iterator[None]:
    """The files written in the block replace theirs only once the whole block succeeded
    (one step's outputs that must agree, e.g. a network and its importance in the same
    filter order); if it raises, none is changed. Reads in the block see the old files."""
    deferred: list[tuple[str, Path]] = []
    token = _DEFERRED.set(deferred)
    try:
        yield
    except BaseException:
        for tmp, _ in deferred:
            _remove(tmp)
        raise
    finally:
        _DEFERRED.reset(token)
    for done, (tmp, path) in enumerate(deferred):
        try:
            os.replace(tmp, path)
        except BaseException:
            for left, _ in deferred[done:]:
                _remove(left)
            raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write_with(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_npz(path: str | Path, **arrays: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write_with(path, write)


# what parsing an unreadable, truncated or wrong-format file raises (JSONDecodeError and
# UnicodeDecodeError are ValueErrors; numpy raises ValueError for pickles and junk)
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
RERUN = "run the step that writes it"


def read_file(path: str | Path, parse: Callable[[Path], T], hint: str = RERUN,
              corrupt: type[Exception] = ValueError,
              missing: type[Exception] = FileNotFoundError) -> T:
    """``parse(path)``; ``missing`` / ``corrupt`` naming the file, the problem and ``hint``
    (how to make the file) when it is absent or ``parse`` cannot read it."""
    path = Path(path)
    if not path.is_file():
        raise missing(f"{path} not found: {hint}")
    try:
        return parse(path)
    except READ_ERRORS as exc:
        raise corrupt(f"{path} is corrupt ({type(exc).__name__}: {exc}): {hint}") from exc


def read_json(path: str | Path, hint: str = RERUN, **errors: type[Exception]) -> Any:
    return read_file(path, lambda p: json.loads(p.read_text()), hint, **errors)


KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
              list: "a list", dict: "a JSON object"}
_ABSENT = object()


def is_json(value: Any, kind: type | tuple[type, ...]) -> bool:
    """``value`` is of JSON type ``kind``: an integer is also a number (``float``); true /
    false are neither."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds) or (float in kinds and isinstance(value, int))


def json_field(data: Any, key: str, path: str | Path, kind: type | tuple[type, ...] = object,
               hint: str = RERUN, *, default: Any = _ABSENT,
               error: type[Exception] = ValueError) -> Any:
    """Field ``key`` of the JSON object ``data`` read from ``path`` (dotted for nested
    objects, a number for a list's element: ``"stages.stage_b.inputs.0.shape"``), of type
    ``kind`` (``float``: any number); ``default`` when absent, if given. Else ``error``
    naming the file, the field, the value and ``hint`` (what to re-run)."""
    node, parent = data, ""
    for part in key.split("."):
        if isinstance(node, list) and part.isdigit():
            present, part = int(part) < len(node), int(part)
        elif isinstance(node, dict):
            present = part in node
        else:
            where = f"field {parent!r}" if parent else "the file"
            raise error(f"{path}: {where} must be a JSON object; got {node!r:.80}: {hint}")
        if not present:
            if default is not _ABSENT:
                return default
            raise error(f"{path} has no field {key!r}: {hint}")
        node, parent = node[part], f"{parent}.{part}" if parent else str(part)
    if kind is not object and not is_json(node, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(KIND_NAMES.get(k, k.__name__) for k in kinds)
        raise error(f"{path}: field {key!r} must be {names}; got {node!r:.80}: {hint}")
    return node


def read_npz(path: str | Path, hint: str = RERUN, keys: Iterable[str] | None = None,
             **errors: type[Exception]) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (no pickles); with ``keys`` only those it has."""
    def parse(p: Path) -> dict[str, np.ndarray]:
        archive = np.load(p, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with archive:
            wanted = archive.files if keys is None else [k for k in keys if k in archive.files]
            return {k: archive[k] for k in wanted}
    return read_file(path, parse, hint, **errors)
