"""``verilator --lint-only -Wall`` over every RTL source: ``python -m dyfip_hw.rtl_lint``.

Lints each module of hw/dyfip_hw/rtl for a few parameter sets (edge cases included), a wrapper
and MaskSplit tops rendered by :mod:`dyfip_hw.rtl_codegen`. Exit status 0 when all are clean.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .rtl_codegen import (CORE_SOURCES, RTL_DIR, MvauRtlParams, generate_masked_mvau_rtl,
                          mask_split_verilog)
from .rtl_sim import verilator_lint

CORE = [RTL_DIR / f for f in CORE_SOURCES]
# (label, top, sources, parameters)
TARGETS: list[tuple[str, str, list[Path], dict[str, Any]]] = [
    ("fifo default", "dyfip_fifo", [RTL_DIR / "dyfip_fifo.sv"], {}),
    ("fifo depth 1", "dyfip_fifo", [RTL_DIR / "dyfip_fifo.sv"], {"DEPTH": 1, "WIDTH": 3}),
    ("mvau default", "masked_mvau", CORE, {}),
    ("mvau PE=SIMD=1 conv", "masked_mvau", CORE,
     {"PE": 1, "SIMD": 1, "MW": 18, "MH": 3, "KK": 9, "NUM_PIXELS": 5}),
    ("mvau PE=MH", "masked_mvau", CORE, {"PE": 8, "SIMD": 4, "MW": 8, "MH": 8}),
    ("mvau digits stage_b.0", "masked_mvau", CORE,
     {"PE": 8, "SIMD": 8, "MW": 288, "MH": 64, "KK": 9, "NUM_PIXELS": 16, "ACCU_WIDTH": 14}),
    ("mvau no thresholds", "masked_mvau", CORE,
     {"PE": 2, "SIMD": 2, "MW": 8, "MH": 4, "USE_THRESHOLDS": 0, "OUT_WIDTH": 16}),
]


def lint_all(verbose: bool = True) -> list[str]:
    """Lint every target; return the labels that failed (with their messages printed)."""
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        p = MvauRtlParams(pe=2, simd=3, mw=18, mh=4, kk=2, num_pixels=4, name="lint_wrapper")
        w = np.ones((p.mw, p.mh), np.int64)
        th = np.tile(np.arange(p.n_thresholds), (p.mh, 1))
        files = generate_masked_mvau_rtl(tmp, p, w, th)
        generated = [("generated wrapper", p.name, files, {})]
        # MaskSplit tops: byte-aligned words and padded ones (digits, Fashion-MNIST, odd sizes)
        for filters, first in (([64, 64], 32), ([64, 64, 128], 32), ([6, 5], 3)):
            top = "mask_split_" + "_".join(map(str, [*filters, first]))
            path = Path(tmp) / f"{top}.v"
            path.write_text(mask_split_verilog(top, filters, first))
            generated.append((f"mask split {filters} / {first}", top, [path], {}))
        for label, top, sources, params in [*TARGETS, *generated]:
            res = verilator_lint(sources, top, params)
            ok = res.returncode == 0 and "%Warning" not in res.stderr
            if not ok:
                failed.append(label)
            if verbose:
                print(f"{'ok  ' if ok else 'FAIL'} {label}")
                if not ok:
                    print(res.stderr)
    return failed


def main() -> int:
    failed = lint_all()
    print(f"verilator -Wall: {len(failed)} target(s) with findings" if failed
          else "verilator -Wall: clean")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
