"""Vivado IP Integrator glue of DyFiP's RTL ops, in the form FINN's ``CreateStitchedIP``
expects (checked against it, up to the Vivado call, by tests/test_hw_stitch.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def ipi_commands(op: Any, files: list[str | Path]) -> list[str]:
    """One ``add_files -norecurse FILE`` per HDL source (FINN accepts one file per command),
    then the module-reference cell of the op's top module, named after the node."""
    top = op.get_nodeattr("gen_top_module") or op.get_verilog_top_module_name()
    return [*(f"add_files -norecurse {f}" for f in files),
            f"create_bd_cell -type module -reference {top} {op.onnx_node.name}"]


class StreamsByInput(list):
    """A node's AXI-Stream inputs ``[(name, width), ...]`` that FINN also looks up by ONNX
    input index (``CreateStitchedIP`` connects input ``i`` to ``s_axis[i]``): ``positions``
    maps an input index to its stream when constants (weights, thresholds) come between."""

    def __init__(self, streams: list[tuple[str, int]], positions: dict[int, int]) -> None:
        super().__init__(streams)
        self.positions = positions

    def __getitem__(self, index):
        if isinstance(index, int) and index in self.positions:
            index = self.positions[index]
        return super().__getitem__(index)
