"""Open a bitstream on a pynq device (a real board or the simulated one) with clear errors."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import BitfileMissingError, DriverError, NoBoardError
from .iospec import BITSTREAM_HINT

NO_BOARD_HINT = ("run on a PYNQ board, or use the simulated board: DyFiP.open(bundle, "
                 "board='sim'), or board='auto' (the default) to take it when no board is found")


def pynq_device(device: Any = None) -> Any:
    """``device`` or pynq's active device; :class:`NoBoardError` if there is none."""
    if device is not None:
        return device
    try:
        import pynq
        if os.environ.get("DYFIP_SIM_BOARD", "") not in ("", "0"):
            from . import sim  # noqa: F401  (registers the simulated board before probing)
    except ImportError as exc:
        raise NoBoardError(f"pynq is not installed ({exc}): use the board environment "
                           "(make board-env) or a PYNQ image") from exc
    try:
        return pynq.Device.active_device
    except RuntimeError as exc:  # pynq: "No Devices Found"
        raise NoBoardError(f"no PYNQ device found ({exc}): {NO_BOARD_HINT}") from exc


def is_simulated(device: Any) -> bool:
    """Whether ``device`` is :mod:`dyfip.driver.sim`'s simulated board (never imports it:
    if it was not imported, no simulated board exists)."""
    module = sys.modules.get(f"{__package__}.sim.device")
    return module is not None and isinstance(device, module.SimDevice)


def open_overlay(bitfile: str | Path, device: Any = None, download: bool = True) -> Any:
    """``pynq.Overlay(bitfile)`` after checking the files and the device."""
    bitfile = Path(bitfile)
    if not bitfile.is_file():
        raise BitfileMissingError(f"bitstream {bitfile} not found: {BITSTREAM_HINT}")
    device = pynq_device(device)
    hwh = bitfile.with_suffix(".hwh")
    if not is_simulated(device) and not hwh.is_file():
        raise BitfileMissingError(f"{hwh} not found: pynq reads the block design of {bitfile} "
                                  f"from it; {BITSTREAM_HINT}")
    from pynq import Overlay

    try:
        return Overlay(str(bitfile.resolve()), device=device, download=download)
    except (OSError, ValueError, RuntimeError, SyntaxError) as exc:  # a cut .hwh: ParseError
        raise DriverError(f"could not load bitstream {bitfile} on {device}: {exc}") from exc
