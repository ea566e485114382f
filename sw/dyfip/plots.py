"""Figures for files: a headless pyplot and an atomic PNG save (host only: matplotlib)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundle import atomic_write_with


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig: Any, path: str | Path) -> None:
    """Write ``fig`` to ``path`` as PNG atomically, then release it."""
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    pyplot().close(fig)
