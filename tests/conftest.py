"""Shared fixtures: a tiny DyFiP run on the built-in digits, trained once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")


def tiny_config(**changes):
    from dyfip.config import preset

    return preset("digits", epochs=4, finetune_epochs=2, xai_samples_per_class=16,
                  sweep_tau=(0.8,), sweep_k=(2,), sweep_budget=(0.25,), **changes)


@pytest.fixture(scope="session")
def digits():
    from dyfip.data import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A complete bundle (train -> explain -> finetune -> evaluate) of a tiny digits run."""
    from dyfip.pipeline import Pipeline

    out = tmp_path_factory.mktemp("bundle")
    Pipeline(tiny_config(), out).run()
    return out
