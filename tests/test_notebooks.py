"""Notebooks 1 (train/explain/evaluate) and 2 (build + estimates) run in the host env on
tiny settings, in order, sharing one bundle."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.notebook
NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def run_notebook(name: str, timeout: int = 600) -> None:
    """Execute ``notebooks/<name>`` in a fresh kernel of this interpreter's environment."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()


def test_notebooks_1_and_2(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("DYFIP_NB_TINY", "1")
    monkeypatch.setenv("DYFIP_NB_BUNDLE", str(tmp_path / "bundle"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_notebook("01_train_explain_evaluate.ipynb")
    assert (tmp_path / "bundle" / "tables.npz").exists()
    run_notebook("02_build_accelerator.ipynb")
    assert (tmp_path / "bundle" / "estimates.json").exists()
