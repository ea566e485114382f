"""Notebook 3 (run on the board) in the board env, on the simulated board."""
from __future__ import annotations

import pytest

from board_conftest import bundle_dir  # noqa: F401
from test_notebooks import run_notebook

pytestmark = [pytest.mark.notebook, pytest.mark.board_env]


def test_notebook_3_on_the_simulated_board(bundle_dir, monkeypatch):
    pytest.importorskip("pynq")
    monkeypatch.setenv("DYFIP_NB_BUNDLE", str(bundle_dir))
    monkeypatch.setenv("DYFIP_BOARD", "sim")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_notebook("03_run_on_board.ipynb", timeout=300)
