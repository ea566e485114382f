"""``SimDevice``: a pynq.Device executing DyFiP's stage graphs behind FINN IODMA registers.

Registered in pynq's device registry (``_probe_priority_``/``_probe_``), so
``pynq.Overlay``, ``pynq.allocate`` and ``MMIO`` work on it unchanged. Each IODMA is an
``ap_ctrl_hs`` register block (see :mod:`dyfip.driver.dma`); when every IODMA of a stage
has been started, the stage runs bit-exactly in :mod:`dyfip.dataflow` on the bytes the
driver flushed to (simulated) DDR, the output is packed back, and ``ap_done`` rises. The
modelled time of each run (cycle model of ``accel/layers.json`` at the bitstream clock) is
accumulated in :attr:`modelled_seconds`.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np
from pynq import Device

from ...dataflow import Accelerator, stage_cycles
from ..dma import ADDR_HI, ADDR_LO, AP_DONE, AP_IDLE, AP_START, COUNT, CTRL
from ..iospec import StageIO
from .design import SimDesign
from .memory import SimMemory

ENV = "DYFIP_SIM_BOARD"


@dataclass
class SimIODMA:
    """Register file of one IODMA."""

    name: str
    stage: str
    role: str  # input role, or "output"
    regs: dict[int, int] = field(default_factory=lambda: {CTRL: AP_IDLE})
    started: bool = False

    @property
    def address(self) -> int:
        return self.regs.get(ADDR_LO, 0) | (self.regs.get(ADDR_HI, 0) << 32)

    @property
    def count(self) -> int:
        return self.regs.get(COUNT, 0)


class SimDevice(Device):
    """The simulated board (one per process; see :func:`dyfip.driver.sim.install`)."""

    _probe_priority_ = 990

    @classmethod
    def _probe_(cls) -> list["SimDevice"]:
        return [cls()] if os.environ.get(ENV, "") not in ("", "0") else []

    def __init__(self, tag: str = "dyfip_sim0"):
        super().__init__(tag)
        self.name = "DyFiP simulated board"
        self.capabilities = {"REGISTER_RW": True}
        self.timestamp = ""
        self.bitfile_name = None
        self.clear_dict()
        self.memory = SimMemory()
        self.design: SimDesign | None = None
        self.accel: Accelerator | None = None
        self.dmas: dict[int, SimIODMA] = {}
        self.stuck: set[str] = set()  # IODMAs that never complete (fault injection)
        self.modelled_seconds = 0.0
        self.runs: list[dict] = []

    def __repr__(self) -> str:
        return f"<SimDevice {self.tag}: {self.bitfile_name or 'no bitstream'}>"

    # -- bitstream --------------------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name: str):
        return SimDesign.load(bitfile_name).parser()

    def download(self, bitstream, parser=None) -> None:
        parser = parser or self.get_bitfile_metadata(bitstream.bitfile_name)
        self.design = parser.design
        self.accel = Accelerator(self.design.accel_dir)
        self.dmas = {}
        for stage, io in self.design.io.items():
            for role, s in (*io.inputs.items(), ("output", io.output)):
                self.dmas[self.design.ips[s.dma]] = SimIODMA(s.dma, stage, role)
        self.post_download(bitstream, parser)

    def gen_cache(self, bitstream, parser=None) -> None:
        pass

    # -- memory --------------------------------------------------------------------------------
    def allocate(self, shape, dtype, **kwargs):
        return self.memory.allocate(self, shape, dtype)

    def flush(self, bo, offset, ptr, size) -> None:
        self.memory.flush(bo, offset, size)

    def invalidate(self, bo, offset, ptr, size) -> None:
        self.memory.invalidate(bo, offset, size)

    # -- registers -----------------------------------------------------------------------------
    def _dma(self, address: int) -> tuple[SimIODMA, int]:
        for base, dma in self.dmas.items():
            if base <= address < base + 0x1_0000:
                return dma, address - base
        raise MemoryError(f"simulated board: no IP at address 0x{address:x} (bitstream "
                          f"{'not loaded' if self.design is None else 'has no such IP'})")

    def read_registers(self, address: int, length: int) -> bytes:
        dma, offset = self._dma(address)
        value = dma.regs.get(offset, 0)
        if offset == CTRL:
            dma.regs[CTRL] = value & ~AP_DONE  # ap_done is clear-on-read
        return struct.pack("<I", value & 0xFFFFFFFF)[:length]

    def write_registers(self, address: int, data: bytes) -> None:
        dma, offset = self._dma(address)
        value = int.from_bytes(bytes(data)[:4].ljust(4, b"\0"), "little")
        if offset != CTRL:
            dma.regs[offset] = value
        elif value & AP_START and dma.regs[CTRL] & AP_IDLE:
            dma.regs[CTRL] = AP_START
            dma.started = True
            self._maybe_run(dma.stage)

    # -- execution -------------------------------------------------------------------------------
    def _maybe_run(self, stage: str) -> None:
        dmas = [d for d in self.dmas.values() if d.stage == stage]
        if not all(d.started for d in dmas):
            return  # a dataflow stage starts when all its streams are set up
        io: StageIO = self.design.io[stage]
        counts = {d.count for d in dmas}
        if len(counts) != 1:
            raise RuntimeError(f"simulated board: IODMAs of {stage} started with different "
                               f"image counts {sorted(counts)}: the accelerator would hang")
        n = counts.pop()
        by_role = {d.role: d for d in dmas}
        inputs = {role: s.unpack(self.memory.read(by_role[role].address, n * s.bytes_per_image),
                                 n) for role, s in io.inputs.items()}
        out = self.accel.stages[stage].run(**inputs)
        cycles = self._cycles(stage, inputs)
        for d in dmas:
            d.started = False
            if d.name in self.stuck:
                d.regs[CTRL] = 0  # busy forever
                continue
            d.regs[CTRL] = AP_DONE | AP_IDLE
        if io.output.dma not in self.stuck:
            self.memory.write(by_role["output"].address, io.output.pack(out).reshape(-1))
        seconds = cycles * self.design.clk_ns * 1e-9
        self.modelled_seconds += seconds
        self.runs.append({"stage": stage, "images": n, "cycles": cycles, "seconds": seconds})

    def _cycles(self, stage: str, inputs: dict[str, np.ndarray]) -> int:
        """Modelled cycles of a batch: first image's latency, then one bottleneck-layer
        interval per further image (dataflow pipelining), each under its own mask."""
        spec = self.accel.description["stages"][stage]
        mask = inputs.get("mask")
        filters = self.accel.description["filters_per_layer"]
        bounds = np.cumsum([0, *filters])

        def per_layer(i):
            if mask is None:
                return None
            return [mask[i, lo:hi].astype(bool) for lo, hi in zip(bounds[:-1], bounds[1:])]
        n = len(next(iter(inputs.values())))
        if n == 0:
            return 0
        return stage_cycles(spec, per_layer(0)) + sum(
            stage_cycles(spec, per_layer(i), "bottleneck") for i in range(1, n))

    def take_modelled_seconds(self) -> float:
        """Modelled accelerator time since the last call (the driver's ``device_model_s``)."""
        t, self.modelled_seconds = self.modelled_seconds, 0.0
        return t
