"""Simulated DDR: pynq buffers with a device-side copy, synced only by flush/invalidate.

A driver that forgets ``flush()`` before a DMA or ``invalidate()`` after it reads stale
data here, as it would on a board with cacheable buffers.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

BASE = 0x1000_0000
ALIGN = 4096


@dataclass
class Region:
    address: int
    host: np.ndarray  # the PynqBuffer the driver sees
    ddr: np.ndarray  # uint8 device-side bytes


class SimMemory:
    """Bump allocator of physically contiguous buffers with a device copy each."""

    def __init__(self) -> None:
        self.regions: list[Region] = []
        self._next = BASE

    def allocate(self, device, shape, dtype, **kwargs) -> np.ndarray:
        from pynq.buffer import PynqBuffer

        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        address = self._next
        self._next += -(-max(nbytes, 1) // ALIGN) * ALIGN
        buf = PynqBuffer(shape, dtype, device=device, device_address=address, bo=address,
                         coherent=False)
        buf[...] = 0
        self.regions.append(Region(address, buf, np.zeros(nbytes, np.uint8)))
        return buf

    def region(self, address: int) -> Region:
        i = bisect.bisect_right([r.address for r in self.regions], address) - 1
        if i < 0 or address >= self.regions[i].address + len(self.regions[i].ddr):
            raise MemoryError(f"simulated DMA at 0x{address:x}: no buffer allocated there")
        return self.regions[i]

    def _host_bytes(self, bo: int) -> tuple[Region, np.ndarray]:
        r = self.region(bo)
        return r, np.asarray(r.host).reshape(-1).view(np.uint8)

    def flush(self, bo: int, offset: int, nbytes: int) -> None:
        r, host = self._host_bytes(bo)
        r.ddr[offset:offset + nbytes] = host[offset:offset + nbytes]

    def invalidate(self, bo: int, offset: int, nbytes: int) -> None:
        r, host = self._host_bytes(bo)
        host[offset:offset + nbytes] = r.ddr[offset:offset + nbytes]

    def read(self, address: int, nbytes: int) -> np.ndarray:
        r = self.region(address)
        lo = address - r.address
        if lo + nbytes > len(r.ddr):
            raise MemoryError(f"simulated DMA reads {nbytes} bytes at 0x{address:x}, past the "
                              f"end of its {len(r.ddr)}-byte buffer")
        return r.ddr[lo:lo + nbytes].copy()

    def write(self, address: int, data: np.ndarray) -> None:
        r = self.region(address)
        lo = address - r.address
        if lo + len(data) > len(r.ddr):
            raise MemoryError(f"simulated DMA writes {len(data)} bytes at 0x{address:x}, past "
                              f"the end of its {len(r.ddr)}-byte buffer")
        r.ddr[lo:lo + len(data)] = data
