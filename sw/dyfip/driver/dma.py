"""One accelerator stage behind FINN IODMAs: buffers, packing, register protocol, timeout.

The register protocol is FINN's for ``zynq-iodma`` (``FINNDMAOverlay.execute_on_buffers``):
an HLS ``ap_ctrl_hs`` block per IODMA with the buffer address at 0x10/0x14, the number of
images at 0x1C and control/status at 0x00 (bit 0 ap_start, bit 1 ap_done, clear on read,
bit 2 ap_idle). Unlike FINN's driver, waiting is bounded by a timeout.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .errors import DMATimeoutError, DriverError, InputError
from .iospec import StageIO

CTRL, ADDR_LO, ADDR_HI, COUNT = 0x00, 0x10, 0x14, 0x1C
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4


def start_dma(dma: Any, address: int, count: int) -> None:
    """Program and start one IODMA (``dma``: a pynq IP driver with read/write)."""
    dma.write(ADDR_LO, address & 0xFFFFFFFF)
    dma.write(ADDR_HI, (address >> 32) & 0xFFFFFFFF)
    dma.write(COUNT, count)
    dma.write(CTRL, AP_START)


def wait_done(dma: Any, name: str, timeout_s: float) -> None:
    """Poll ``ap_done`` until set; :class:`DMATimeoutError` after ``timeout_s`` seconds."""
    deadline = time.perf_counter() + timeout_s
    while not dma.read(CTRL) & AP_DONE:
        if time.perf_counter() > deadline:
            raise DMATimeoutError(
                f"IODMA {name} did not complete within {timeout_s:g} s: the accelerator is "
                "stuck or the bitstream does not match the driver settings; reload the "
                "overlay (DyFiP(...) again) or raise timeout_s for very large batches")


class StageRunner:
    """Run one stage on batches: pack inputs into DMA buffers, start, wait, unpack."""

    def __init__(self, overlay: Any, io: StageIO, max_batch: int, timeout_s: float):
        from pynq import allocate

        self.io, self.max_batch, self.timeout_s = io, max_batch, timeout_s
        try:
            self.idma = {r: getattr(overlay, s.dma) for r, s in io.inputs.items()}
            self.odma = getattr(overlay, io.output.dma)
        except AttributeError as exc:
            raise DriverError(f"the overlay has no IODMA for stage {io.name} ({exc}): the "
                              "bitstream does not match the bundle's driver settings") from exc
        device = overlay.device

        def buf(stream):
            return allocate((max_batch, *stream.shape_packed[1:]), dtype=np.uint8,
                            cacheable=True, target=device)
        self.ibuf = {r: buf(s) for r, s in io.inputs.items()}
        self.obuf = buf(io.output)

    def run(self, **inputs: np.ndarray) -> np.ndarray:
        """Integer inputs by role, ``(N, *shape_normal[1:])`` -> integer output (N, ...)."""
        missing = set(self.io.inputs) - set(inputs)
        if missing:
            raise InputError(f"stage {self.io.name}: missing input(s) {sorted(missing)}")
        n = len(next(iter(inputs.values())))
        parts = [self._run_chunk({r: v[i:i + self.max_batch] for r, v in inputs.items()})
                 for i in range(0, n, self.max_batch)]
        if not parts:
            return np.zeros((0, *self.io.output.shape_normal[1:]), np.int64)
        return np.concatenate(parts)

    def _run_chunk(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(inputs.values())))
        for role, stream in self.io.inputs.items():
            want = tuple(stream.shape_normal[1:])
            if tuple(inputs[role].shape) != (n, *want):
                raise InputError(f"stage {self.io.name}: input {role} must have shape "
                                 f"(N, {', '.join(map(str, want))}); got {inputs[role].shape}")
            dst = self.ibuf[role][:n]
            dst[...] = stream.pack(inputs[role])
            dst.flush()
        if not self.odma.read(CTRL) & AP_IDLE:
            raise DriverError(f"output IODMA {self.io.output.dma} is not idle (an earlier "
                              "transfer never finished): reload the overlay")
        start_dma(self.odma, self.obuf.device_address, n)
        for role in self.io.inputs:
            start_dma(self.idma[role], self.ibuf[role].device_address, n)
        wait_done(self.odma, self.io.output.dma, self.timeout_s)
        out = self.obuf[:n]
        out.invalidate()
        return self.io.output.unpack(np.asarray(out), n)
