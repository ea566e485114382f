"""The deployment bundle: one folder per build, every file written atomically.

numpy-only, so the board driver can use it.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

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


def atomic_write_with(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file,
    and the file gets the usual permissions (a bundle is shared and copied to boards)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the step that writes it first")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is corrupt (not JSON: {exc}): re-run the step that "
                         "writes it") from None


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles); a missing or corrupt file names itself."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the step that writes it first")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path} is corrupt ({exc}): re-run the step that writes it") from None
