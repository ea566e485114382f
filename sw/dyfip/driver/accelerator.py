"""``DyFiP``: the DyFiP accelerator on a PYNQ board (or the simulated board)."""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..decision import restricted_argmax
from .board import is_simulated, open_overlay, pynq_device
from .deployment import Deployment, check_positive, check_tau, design_digest
from .dma import StageRunner
from .errors import BundleMismatchError, InputError, NoBoardError
from .files import json_field, read_json
from .host import CycleModel, HostPolicy
from .iospec import BITSTREAM_HINT, DRIVER_JSON, load_io
from .results import FULL, PRUNED, Results

BITFILE = "dyfip.bit"


def _count(value: Any, name: str) -> int:
    """``value`` as an int if it is an integer >= 1; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


def auto_board() -> str:
    """``"sim"`` if pynq finds no device or its active device is the simulated board
    (``DYFIP_SIM_BOARD=1``), else ``"pynq"``."""
    try:
        device = pynq_device()
    except NoBoardError:
        return "sim"
    return "sim" if is_simulated(device) else "pynq"


class DyFiP:
    """Load a deployment bundle and its bitstream; classify images with early exit / masks.

    ``bundle``: the bundle folder; ``bitfile``: the bitstream (default
    ``<bundle>/accel/dyfip.bit``), with ``driver.json`` next to it if the build wrote one;
    ``device``: a pynq device (default: pynq's active device); ``tau`` (in (0, 1])
    overrides the bundle's exit threshold; ``batch_size`` (>= 1) images go through the DMA
    buffers at a time; ``timeout_s`` (finite, > 0) bounds every DMA wait. Works unchanged on
    a PYNQ board and on :mod:`dyfip.driver.sim`'s simulated board. Bad ``tau`` /
    ``batch_size`` / ``timeout_s``: ValueError.
    """

    def __init__(self, bundle: str | Path, bitfile: str | Path | None = None,
                 device: Any = None, batch_size: int = 64, timeout_s: float = 5.0,
                 model_hash: str | None = None, download: bool = True,
                 tau: float | None = None):
        tau = None if tau is None else check_tau(tau)
        batch_size = _count(batch_size, "batch_size")
        timeout_s = check_positive(timeout_s, "timeout_s")
        self.deployment = dep = Deployment.load(bundle, model_hash)
        if tau is not None:
            dep.tau = tau
        self.bitfile = Path(bitfile) if bitfile else dep.accel_dir / BITFILE
        settings_dir = self._check_design(self.bitfile.parent)
        self.io = load_io(settings_dir, dep.accel)
        self.overlay = open_overlay(self.bitfile, device, download)
        self.device = self.overlay.device
        self.batch_size = batch_size
        self.stage_a = StageRunner(self.overlay, self.io["stage_a"], batch_size, timeout_s)
        self.stage_b = StageRunner(self.overlay, self.io["stage_b"], batch_size, timeout_s)
        self.policy = HostPolicy(dep)
        self.cycles = CycleModel(dep, self.policy)
        self.image_shape = dep.image_shape
        self._all_on = np.ones((1, self.policy.mask_rows.shape[1]), np.uint8)

    @classmethod
    def open(cls, bundle: str | Path, board: str = "auto", **kwargs: Any) -> "DyFiP":
        """``board``: ``"pynq"`` (a real board), ``"sim"`` (the simulated board) or
        ``"auto"`` (the real board if pynq finds one; the simulation if pynq finds none or
        finds the simulated board, as with ``DYFIP_SIM_BOARD=1``); the environment variable
        ``DYFIP_BOARD`` overrides ``"auto"``."""
        if board == "auto":
            board = os.environ.get("DYFIP_BOARD", "auto")
        if board == "auto":
            board = auto_board()
        if board == "sim":
            try:
                from .sim import install, simulated_bitstream
            except ImportError as exc:
                raise NoBoardError(f"the simulated board needs pynq ({exc}): use the board "
                                   "environment (make board-env)") from exc

            if kwargs.pop("bitfile", None) is not None:  # a board script on the simulation
                warnings.warn("the simulated board runs the bundle's simulated bitstream, "
                              "not the given bitfile", stacklevel=2)
            kwargs.pop("device", None)
            return cls(bundle, bitfile=simulated_bitstream(bundle), device=install(), **kwargs)
        if board != "pynq":
            raise ValueError(f"board must be 'auto', 'pynq' or 'sim'; got {board!r}")
        return cls(bundle, **kwargs)

    def _check_design(self, bit_dir: Path) -> Path:
        """The folder whose driver.json to use; checks it was built from this bundle."""
        dep = self.deployment
        for folder in (bit_dir, dep.accel_dir):
            path = folder / DRIVER_JSON
            if path.exists():
                settings = read_json(path, BITSTREAM_HINT)
                want = json_field(settings, "design_digest", path, str, BITSTREAM_HINT,
                                  default=None)
                if want and want != design_digest(dep.accel_dir):
                    raise BundleMismatchError(
                        f"bitstream settings {path} were built for another accelerator than "
                        f"{dep.accel_dir} (design digest {want[:12]} != "
                        f"{design_digest(dep.accel_dir)[:12]}): deploy the matching bundle "
                        "or rebuild the bitstream")
                mh = json_field(settings, "model_hash", path, str, BITSTREAM_HINT, default=None)
                if mh and mh != dep.model_hash:
                    raise BundleMismatchError(f"bitstream settings {path} are for model "
                                              f"{mh[:12]}, the bundle for {dep.model_hash[:12]}")
                return folder
        return dep.accel_dir

    # -- inputs ------------------------------------------------------------------------------
    def check_images(self, images: Any) -> np.ndarray:
        """uint8 ``(N, C, H, W)`` (or one ``(C, H, W)``) -> NHWC pixels for stage A."""
        if not isinstance(images, np.ndarray):
            raise InputError(f"images must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise InputError(f"images must be uint8 (0..255) as in reference.npz; got "
                             f"{images.dtype}")
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise InputError(f"images must have shape (N, {', '.join(map(str, self.image_shape))}"
                             f") or {self.image_shape} (C, H, W); got {images.shape}")
        return np.ascontiguousarray(images.transpose(0, 2, 3, 1))

    # -- inference -----------------------------------------------------------------------------
    def features(self, images: np.ndarray) -> np.ndarray:
        """Stage A on the accelerator: integer NHWC features."""
        return self.stage_a.run(pixels=self.check_images(images))

    def classify(self, images: np.ndarray) -> Results:
        """DyFiP on a batch: stage A, host decision, stage B under mask(S) for non-exits.
        An empty batch ``(0, C, H, W)`` gives empty results (as :meth:`classify_full`)."""
        t0 = time.perf_counter()
        self._consume_device_time()
        feats = self.features(images)
        t1 = time.perf_counter()
        step = self.policy.step(feats)
        run = np.flatnonzero(step.rows >= 0)
        masks = self.policy.masks(step.rows)
        t2 = time.perf_counter()
        dec = step.decision
        classes = dec.branch_pred.copy()
        logits = np.full((len(feats), self.deployment.num_classes), np.nan)
        if len(run):
            logits[run] = self.stage_b.run(features=feats[run], mask=masks[run])
            classes[run] = restricted_argmax(logits[run], dec.subsets[run])
        t3 = time.perf_counter()
        return self._results(classes, dec.exit, dec.branch_pred, dec.confidence, dec.subsets,
                             masks, self.cycles.per_image(step.rows), logits, PRUNED,
                             {"stage_a_s": t1 - t0, "host_s": t2 - t1, "stage_b_s": t3 - t2,
                              "total_s": t3 - t0})

    def classify_full(self, images: np.ndarray) -> Results:
        """The deployed network with every filter enabled and no exit: stage A, then stage B
        under an all-ones mask on the same accelerator (results' path ``"full"``), the
        latency reference for :meth:`classify`. It runs the bundle's mask-fine-tuned
        weights unmasked, so its accuracy is NOT the report's ``full`` (the unpruned base
        network) and is usually lower."""
        t0 = time.perf_counter()
        self._consume_device_time()
        feats = self.features(images)
        t1 = time.perf_counter()
        n = len(feats)
        masks = np.repeat(self._all_on, n, axis=0)
        logits = self.stage_b.run(features=feats, mask=masks)
        classes = logits.argmax(axis=1)
        t2 = time.perf_counter()
        none = np.zeros(n, bool)
        return self._results(classes, none, classes, np.ones(n), np.zeros((n, 0), np.int64),
                             masks, np.full(n, self.cycles.full, np.int64),
                             logits.astype(np.float64), FULL,
                             {"stage_a_s": t1 - t0, "host_s": 0.0, "stage_b_s": t2 - t1,
                              "total_s": t2 - t0})

    def throughput(self, images: np.ndarray, repeats: int = 1) -> dict:
        """Images per second of :meth:`classify` (key ``"dyfip"``) and :meth:`classify_full`
        (key ``"full"``: every filter enabled) on ``images`` (at least one image), each run
        ``repeats`` (>= 1) times; ValueError otherwise."""
        n = len(self.check_images(images))
        if n == 0:
            raise ValueError("throughput needs at least one image; got an empty batch")
        repeats = _count(repeats, "repeats")
        out = {}
        for name, fn in (("dyfip", self.classify), ("full", self.classify_full)):
            t0 = time.perf_counter()
            for _ in range(repeats):
                res = fn(images)
            wall = (time.perf_counter() - t0) / repeats
            out[name] = {"images": n, "wall_images_per_s": n / wall,
                         "model_images_per_s": 1e9 / (self.deployment.clk_ns * max(
                             1.0, float(np.mean(res.model_cycles)))),
                         **res.summary()}
        return out

    # -- helpers -----------------------------------------------------------------------------
    def _results(self, classes, exited, branch_pred, confidence, subsets, masks, cycles,
                 logits, path_name, timings) -> Results:
        dev = self._consume_device_time()
        if dev is not None:
            timings["device_model_s"] = dev
        timings["model_s"] = float(np.sum(cycles)) * self.deployment.clk_ns * 1e-9
        return Results(classes, exited, branch_pred, confidence, subsets, masks, cycles,
                       logits, self.deployment.clk_ns, timings, path_name)

    def _consume_device_time(self) -> float | None:
        take = getattr(self.device, "take_modelled_seconds", None)
        return take() if callable(take) else None

    def __repr__(self) -> str:
        d = self.deployment
        device = getattr(self.device, "name", self.device)
        return (f"DyFiP(bundle={str(d.root)!r}, device={device!r}, k={d.k}, tau={d.tau}, "
                f"classes={d.num_classes}, budget={d.table.budget})")
