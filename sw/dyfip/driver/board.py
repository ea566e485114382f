"""Open a bitstream on a pynq device (a real board or the simulated one) with clear errors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import BitfileMissingError, DriverError, NoBoardError

NO_BOARD_HINT = ("run on a PYNQ board, or use the simulated board: DyFiP.open(bundle, "
                 "board='sim') or DYFIP_SIM_BOARD=1")


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


def open_overlay(bitfile: str | Path, device: Any = None, download: bool = True) -> Any:
    """``pynq.Overlay(bitfile)`` after checking the files and the device."""
    bitfile = Path(bitfile)
    if not bitfile.is_file():
        raise BitfileMissingError(f"bitstream {bitfile} not found: build it with 'dyfip build "
                                  "--bitstream' (needs Vivado) and 'make deploy', or use the "
                                  "simulated board (board='sim')")
    device = pynq_device(device)
    from pynq import Overlay

    try:
        return Overlay(str(bitfile.resolve()), device=device, download=download)
    except (OSError, ValueError) as exc:
        raise DriverError(f"could not load bitstream {bitfile} on {device}: {exc}") from exc
