"""DyFiP's PYNQ host driver (numpy + pynq; no torch, no FINN compiler).

``DyFiP.open(bundle)`` loads a deployment bundle and its bitstream, on a PYNQ board or on
the simulated board (:mod:`dyfip.driver.sim`), and classifies uint8 images with early exit
or filter-pruned stage B (:class:`Results`). pynq is imported only when a board is opened.
"""
from __future__ import annotations

from .accelerator import DyFiP
from .branch import Branch
from .deployment import Deployment
from .errors import (BitfileMissingError, BundleError, BundleMismatchError, DMATimeoutError,
                     DriverError, InputError, NoBoardError)
from .host import CycleModel, HostPolicy
from .results import Result, Results

__all__ = ["BitfileMissingError", "Branch", "BundleError", "BundleMismatchError",
           "CycleModel", "DMATimeoutError", "Deployment", "DriverError", "DyFiP",
           "HostPolicy", "InputError", "NoBoardError", "Result", "Results"]
