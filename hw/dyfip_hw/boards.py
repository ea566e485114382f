"""Target boards: one JSON file per board in ``boards/`` (part, clock, folding targets)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

BOARD_DIR = Path(__file__).parent / "boards"
KNOWN_PARTS = {"xc7z020clg400-1", "xck26-sfvc784-2LV-c", "xczu7ev-ffvc1156-2-e"}


@dataclass(frozen=True)
class Board:
    """A board file. ``folding`` maps layer names (``stage_b.0``, ``classifier`` ...) or FINN
    node names to ``{"PE": p, "SIMD": s}``; filter-enable layers not listed are folded for
    ``target_cycles_per_frame``, every other layer for ``fixed_target_cycles``.

    The folding is latency-oriented: layers whose cost masks cannot cut (stage A, padding,
    sliding windows, pooling, the classifier) get the lower target, so that the single-image
    path is dominated by the layers DyFiP prunes. ``fixed_target_cycles=0`` uses
    ``target_cycles_per_frame`` for all (FINN's throughput-balanced folding)."""

    name: str  # file stem, as given to ``dyfip build --board``
    board: str  # FINN's board name
    part: str
    clk_ns: float
    target_cycles_per_frame: int
    fixed_target_cycles: int = 0
    mvau_wwidth_max: int = 36
    shell_flow: str = "vivado_zynq"
    folding: dict[str, dict[str, int]] = field(default_factory=dict)
    resources: dict[str, int] = field(default_factory=dict)  # LUT, BRAM_18K, URAM, DSP

    @property
    def fixed_target(self) -> int:
        return self.fixed_target_cycles or self.target_cycles_per_frame

    @property
    def fmax_mhz(self) -> float:
        return 1000.0 / self.clk_ns


def available_boards() -> list[str]:
    return sorted(p.stem for p in BOARD_DIR.glob("*.json"))


def load_board(name_or_path: str | Path) -> Board:
    """Board by name (``Pynq-Z2``, ``KV260``, ``ZCU104``) or path to a board JSON file."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = BOARD_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise ValueError(f"unknown board {str(name_or_path)!r}; choose from "
                         f"{available_boards()} or pass a board JSON file")
    data = json.loads(path.read_text())
    known = set(Board.__dataclass_fields__) - {"name"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"board file {path}: unknown keys {sorted(unknown)}")
    board = Board(name=path.stem, **data)
    if board.part not in KNOWN_PARTS:
        raise ValueError(f"board {board.name}: unknown FPGA part {board.part!r}; "
                         f"supported: {sorted(KNOWN_PARTS)}")
    if board.clk_ns <= 0 or board.target_cycles_per_frame < 1:
        raise ValueError(f"board {board.name}: clk_ns={board.clk_ns} and "
                         f"target_cycles_per_frame={board.target_cycles_per_frame} must be > 0")
    for layer, fold in board.folding.items():
        if set(fold) - {"PE", "SIMD"} or not all(isinstance(v, int) and v > 0
                                                  for v in fold.values()):
            raise ValueError(f"board {board.name}: folding of {layer} must be "
                             f"{{'PE': int > 0, 'SIMD': int > 0}}; got {fold}")
    return board
