"""Shared fixtures: one quick DyFiP bundle of the built-in digits per session.

``make test`` builds that bundle once with the CLI (``dyfip run --quick``) and names it in
``DYFIP_TEST_BUNDLE``, so host and board tests share it; without it the fixture builds one.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

# In the board environment (no torch) only the modules with board tests are collected
# (exact file names: test_driver_import.py is a host test). Without pynq (the host
# environment) the pynq-only driver / HIL modules are not collected at all, rather than
# collected and skipped.
BOARD_MODULES = {"test_driver.py", "test_hil.py", "test_notebooks_board.py"}
PYNQ_MODULES = {"test_driver.py", "test_hil.py"}
collect_ignore: list[str] = []
if importlib.util.find_spec("torch") is None:
    collect_ignore += sorted(p.name for p in Path(__file__).parent.glob("test_*.py")
                             if p.name not in BOARD_MODULES)
if importlib.util.find_spec("pynq") is None:
    collect_ignore += sorted(PYNQ_MODULES)


def tiny_config(**changes):
    from dyfip.config import preset

    return preset("digits", quick=True, **changes)


@pytest.fixture(scope="session")
def digits():
    from dyfip.data import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A complete quick bundle (train -> ... -> evaluate -> build) of digits."""
    given = os.environ.get("DYFIP_TEST_BUNDLE")
    if given and (Path(given) / "report.json").exists():
        return Path(given)
    from dyfip.pipeline import Pipeline

    out = tmp_path_factory.mktemp("bundle")
    Pipeline(tiny_config(), out).run()
    return out
