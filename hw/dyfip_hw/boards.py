"""Target boards: one JSON file per board in ``boards/`` (part, clock, folding targets)."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from dyfip.bundle import is_json, read_json

BOARD_DIR = Path(__file__).parent / "boards"
KNOWN_PARTS = {"xc7z020clg400-1", "xck26-sfvc784-2LV-c", "xczu7ev-ffvc1156-2-e"}
RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")  # FINN's resource estimate keys
BOARD_HINT = "fix or replace the board file"


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
    path: str = field(default="", compare=False)  # the board file (for messages)

    @property
    def fixed_target(self) -> int:
        return self.fixed_target_cycles or self.target_cycles_per_frame

    @property
    def fmax_mhz(self) -> float:
        return 1000.0 / self.clk_ns


# JSON value checks of the board file's fields: (test, what the field must be)
FIELD_CHECKS = {
    "board": (lambda v: isinstance(v, str), "a string"),
    "part": (lambda v: isinstance(v, str), "a string"),
    # the overlay is a PYNQ one (Zynq IODMAs and the pynq driver): no Alveo / Vitis shell
    "shell_flow": (lambda v: v == "vivado_zynq", '"vivado_zynq" (the PYNQ overlay flow)'),
    "clk_ns": (lambda v: is_json(v, float) and v > 0, "a number > 0"),
    "target_cycles_per_frame": (lambda v: is_json(v, int) and v >= 1, "an integer >= 1"),
    "fixed_target_cycles": (lambda v: is_json(v, int) and v >= 0, "an integer >= 0 (0: none)"),
    "mvau_wwidth_max": (lambda v: is_json(v, int) and v >= 1, "an integer >= 1"),
    "folding": (lambda v: isinstance(v, dict), "an object {layer: {'PE': p, 'SIMD': s}}"),
    "resources": (lambda v: isinstance(v, dict), f"an object with keys of {list(RESOURCES)}"),
}


def available_boards() -> list[str]:
    return sorted(p.stem for p in BOARD_DIR.glob("*.json"))


def board_path(name_or_path: str | Path) -> Path:
    """The board file of a name (``Pynq-Z2``, ``KV260``, ``ZCU104``) or a ``.json`` path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = BOARD_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise ValueError(f"unknown board {str(name_or_path)!r}; choose from "
                         f"{available_boards()} or pass a board JSON file")
    return path


def check_fields(path: Path, data: Any) -> None:
    """Keys and value types of a board file's JSON object, naming file and field."""
    if not isinstance(data, dict):
        raise ValueError(f"board file {path}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(Board)} - {"name", "path"}
    required = {f.name for f in fields(Board) if f.name in known
                and f.default is MISSING and f.default_factory is MISSING}
    unknown, missing = set(data) - known, required - set(data)
    if unknown:
        raise ValueError(f"board file {path}: unknown keys {sorted(unknown)}")
    if missing:
        raise ValueError(f"board file {path}: missing keys {sorted(missing)}")
    for key, value in data.items():
        test, what = FIELD_CHECKS[key]
        if not test(value):
            raise ValueError(f"board file {path}: {key} must be {what}; got {value!r}")


def check_resources(path: Path, resources: dict) -> None:
    for key, value in resources.items():
        if key not in RESOURCES:
            raise ValueError(f"board file {path}: resources key {key!r} is not a FINN "
                             f"resource; use {list(RESOURCES)}")
        if not is_json(value, float) or value < 0:
            raise ValueError(f"board file {path}: resources.{key} must be a number >= 0; "
                             f"got {value!r}")


def check_board_folding(path: Path, folding: dict) -> None:
    for layer, fold in folding.items():
        if not (isinstance(fold, dict) and set(fold) <= {"PE", "SIMD"}
                and all(is_json(v, int) and v > 0 for v in fold.values())):
            raise ValueError(f"board file {path}: folding.{layer} must be "
                             f"{{'PE': int > 0, 'SIMD': int > 0}}; got {fold!r}")


def load_board(name_or_path: str | Path) -> Board:
    """Board by name (``Pynq-Z2``, ``KV260``, ``ZCU104``) or path to a board JSON file."""
    path = board_path(name_or_path)
    data = read_json(path, BOARD_HINT)
    check_fields(path, data)
    check_resources(path, data.get("resources", {}))
    check_board_folding(path, data.get("folding", {}))
    if data["part"] not in KNOWN_PARTS:
        raise ValueError(f"board file {path}: unknown FPGA part {data['part']!r}; "
                         f"supported: {sorted(KNOWN_PARTS)}")
    return Board(name=path.stem, path=str(path), **data)
