"""The simulated PYNQ board: same pynq API, DyFiP's stage graphs executed bit-exactly.

>>> device = install()                       # pynq's active device is now the simulation
>>> accel = DyFiP(bundle, bitfile=simulated_bitstream(bundle), device=device)

or simply ``DyFiP.open(bundle, board="sim")``. Fault injection: ``device.stuck.add("odma1")``.
"""
from __future__ import annotations

from .design import SimDesign, simulated_bitstream
from .device import ENV, SimDevice

_device: SimDevice | None = None


def _probed() -> SimDevice | None:
    """The simulated board pynq probed itself (``DYFIP_SIM_BOARD=1``), if it did."""
    from pynq import Device

    devices = getattr(Device, "_devices", None) or []
    return next((d for d in devices if isinstance(d, SimDevice)), None)


def install() -> SimDevice:
    """Make the simulated board pynq's active device (idempotent; the one pynq probed if
    ``DYFIP_SIM_BOARD=1``, so there is one simulated board); returns it."""
    global _device
    from pynq import Device

    if _device is None:
        _device = _probed() or SimDevice()
    devices = getattr(Device, "_devices", None)
    if devices is not None and _device not in devices:
        devices.append(_device)
    Device.active_device = _device
    return _device


def fresh_device() -> SimDevice:
    """A new simulated board (own memory and registers), made the active device."""
    global _device
    _device = SimDevice()
    return install()


__all__ = ["ENV", "SimDesign", "SimDevice", "fresh_device", "install", "simulated_bitstream"]
