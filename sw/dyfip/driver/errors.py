"""The driver's errors: each names what is wrong and what to do about it."""
from __future__ import annotations


class DriverError(RuntimeError):
    """Base class of every error the DyFiP driver raises on purpose."""


class BundleError(DriverError, ValueError):
    """The deployment bundle is missing a file or is inconsistent."""


class BundleMismatchError(BundleError):
    """Files of the bundle (or the bitstream) belong to different models / accelerators."""


class InputError(DriverError, ValueError):
    """Images of the wrong shape, dtype or value range."""


class BitfileMissingError(DriverError, FileNotFoundError):
    """No bitstream (.bit) for the accelerator."""


class NoBoardError(DriverError):
    """pynq found no device: not on a PYNQ board and no simulated board installed."""


class DMATimeoutError(DriverError, TimeoutError):
    """An IODMA did not complete within the timeout (accelerator stuck or mis-wired)."""
