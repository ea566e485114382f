"""Fixtures of the board-environment tests (driver, HIL, notebook 3); import with
``from board_conftest import *`` (kept out of tests/conftest.py so host collection is
unchanged).

The tests need a bundle built in the host environment (``dyfip run`` + ``dyfip build
--estimate``) named by ``DYFIP_TEST_BUNDLE``; ``make test-board`` / ``make hil`` build one.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

BUNDLE_ENV = "DYFIP_TEST_BUNDLE"


def test_bundle_path() -> Path:
    path = os.environ.get(BUNDLE_ENV)
    if not path:
        pytest.skip(f"{BUNDLE_ENV} is not set: build a bundle in the host env ('dyfip run "
                    "--out DIR ...' then 'dyfip build --bundle DIR --estimate') and export "
                    f"{BUNDLE_ENV}=DIR (make test-board does this)")
    if not (Path(path) / "accel" / "layers.json").exists():
        pytest.fail(f"{BUNDLE_ENV}={path} is not a built bundle (no accel/layers.json)")
    return Path(path)


test_bundle_path.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    return test_bundle_path()


@pytest.fixture(scope="session")
def reference(bundle_dir) -> dict:
    with np.load(bundle_dir / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def copy_bundle(src: Path, dst: Path) -> Path:
    """The files the board needs (no checkpoints, no FINN intermediates)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.pt", "hw_build", "*.onnx",
                                                            "*.png", "importance.npz"))
    return dst


def board_kind() -> str:
    """``DYFIP_BOARD``: ``pynq`` runs on the real board; default: the simulated board."""
    return os.environ.get("DYFIP_BOARD", "sim")


def assert_matches_reference(res, ref: dict, table) -> None:
    """Paths and masks equal the reference's; classes too, except exact integer-logit ties
    between the two classes (the accelerator picks the lower index, PyTorch's float32
    logits break such ties by rounding noise)."""
    np.testing.assert_array_equal(res.exited, ref["exited"])
    run = ~ref["exited"]
    np.testing.assert_array_equal(res.subsets[run], ref["subsets"][run])
    want = np.zeros_like(res.masks)
    if run.any():
        want[run] = np.concatenate(table.batch_masks(ref["subsets"][run]), axis=1)
    np.testing.assert_array_equal(res.masks, want)
    for i in np.flatnonzero(res.classes != ref["classes"]):
        a, b = int(res.classes[i]), int(ref["classes"][i])
        assert not res.exited[i] and res.logits[i, a] == res.logits[i, b], (
            f"image {i}: class {a} != reference {b} without an integer-logit tie")
