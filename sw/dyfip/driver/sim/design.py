"""The simulated bitstream: a small JSON file standing in for ``.bit`` + ``.hwh``.

It records which exported accelerator (``accel/``, by design digest) the "bitstream"
implements, the clock and the IODMAs with their addresses; ``driver.json`` (FINN-style
driver settings) is written next to it, as a bitstream build would.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...bundle import write_json
from ..deployment import BUILD_HINT, LAYERS, Deployment, design_digest
from ..errors import DriverError
from ..files import read_json
from ..iospec import DRIVER_JSON, StageIO, derive_io, driver_settings, load_io

FORMAT = "dyfip-simulated-bitstream"
IP_BASE, IP_RANGE = 0x4000_0000, 0x1_0000
IODMA_TYPE = "xilinx.com:hls:IODMA_hls:1.0"


def simulated_bitstream(bundle: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write (once) the simulated bitstream of ``bundle``; returns the ``.bit`` path."""
    dep = Deployment.load(bundle)
    digest = design_digest(dep.accel_dir)
    out = Path(out_dir) if out_dir else Path(tempfile.gettempdir()) / "dyfip-sim" / digest[:16]
    bit = out / "dyfip.bit"
    io = derive_io(dep.accel)
    dmas = sorted({s.dma for st in io.values() for s in (*st.inputs.values(), st.output)})
    write_json(out / DRIVER_JSON, driver_settings(io, digest, dep.model_hash, dep.clk_ns))
    write_json(bit, {"format": FORMAT, "accel_dir": str(dep.accel_dir.resolve()),
                     "design_digest": digest, "clk_ns": dep.clk_ns,
                     "ips": {name: IP_BASE + i * IP_RANGE for i, name in enumerate(dmas)}})
    return bit


@dataclass
class SimDesign:
    """A loaded simulated bitstream."""

    bitfile: Path
    accel_dir: Path
    digest: str
    clk_ns: float
    ips: dict[str, int]
    io: dict[str, StageIO]

    @classmethod
    def load(cls, bitfile: str | Path) -> "SimDesign":
        bitfile = Path(bitfile)
        try:
            data = json.loads(bitfile.read_text())
            assert data.get("format") == FORMAT
        except (UnicodeDecodeError, json.JSONDecodeError, AssertionError) as exc:
            raise DriverError(f"{bitfile} is not a simulated DyFiP bitstream: the simulated "
                              "board loads only files from dyfip.driver.sim."
                              "simulated_bitstream()") from exc
        accel = Path(data["accel_dir"])
        if not (accel / LAYERS).exists() or design_digest(accel) != data["design_digest"]:
            raise DriverError(f"simulated bitstream {bitfile}: the accelerator export {accel} "
                              "it was made from is gone or changed; make it again")
        desc = read_json(accel / LAYERS, BUILD_HINT)
        return cls(bitfile, accel, data["design_digest"], float(data["clk_ns"]),
                   {k: int(v) for k, v in data["ips"].items()},
                   load_io(bitfile.parent, desc))

    def parser(self) -> "SimParser":
        return SimParser(self)


class SimParser:
    """What pynq's HWH parser would provide for this design (IODMAs only)."""

    def __init__(self, design: SimDesign):
        self.design = design
        self.ip_dict = {name: {"fullpath": name, "type": IODMA_TYPE, "phys_addr": addr,
                               "addr_range": IP_RANGE, "state": None, "interrupts": {},
                               "gpio": {}, "parameters": {}, "registers": {}, "mem_id": None}
                        for name, addr in design.ips.items()}
        self.gpio_dict, self.mem_dict, self.hierarchy_dict = {}, {}, {}
        self.interrupt_pins, self.interrupt_controllers, self.clock_dict = {}, {}, {}
        self.systemgraph = None
        self.bin_data = None
