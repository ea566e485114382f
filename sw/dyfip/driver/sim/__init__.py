"""The simulated PYNQ board: same pynq API, DyFiP's stage graphs executed bit-exactly.

>>> device = install()                       # pynq's active device is now the simulation
>>> accel = DyFiP(bundle, bitfile=simulated_bitstream(bundle), device=device)

or simply ``DyFiP.open(bundle, board="sim")``. Fault injection: ``device.stuck.add("odma1")``.
"""
from __future__ import annotations

from .design import SimDesign, simulated_bitstream
from .device import ENV, SimDevice

_device: SimDevice | None = None


def install() -> SimDevice:
    """Make the simulated board pynq's active device (idempotent); returns it."""
    global _device
    from pynq import Device

    if _device is None:
        _device = SimDevice()
    devices = getattr(Device, "_devices", None)
    if devices is not None and _device not in devices:
        devices.append(_device)
    Device.active_device = _device
    return _device


def fresh_device() -> SimDevice:
    """A new simulated board (own memory and registers), made the active device."""
    global _device
    _device = None
    return install()


__all__ = ["ENV", "SimDesign", "SimDevice", "fresh_device", "install", "simulated_bitstream"]
