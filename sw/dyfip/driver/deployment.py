"""The deployment bundle as the driver sees it: load, validate, bind to one model."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import bundle as names
from ..dataflow import BUILD_HINT
from ..tables import MaskTable, TableError
from .branch import Branch
from .errors import BundleError, BundleMismatchError
from .files import json_field, read_bytes, read_json, read_npz
from .iospec import is_datatype

ACCEL = "accel"
LAYERS = "layers.json"
ESTIMATES = "estimates.json"
DEFAULT_CLK_NS = 10.0
RUN_HINT = "(re)make the bundle with 'dyfip run'"
EVALUATE_HINT = "(re)write it with 'dyfip evaluate' on the host"
STAGE_LISTS = ("inputs", "outputs", "layers")  # per stage in layers.json, each non-empty
# the streams the driver moves: per stage its inputs by role, and one output; NHWC or (1, N)
STREAM_RANKS = {"stage_a": {"pixels": 4}, "stage_b": {"features": 4, "mask": 2}}
OUTPUT_RANKS = {"stage_a": 4, "stage_b": 2}


def _as_float(value: Any) -> float:
    """``float(value)``, NaN if it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_tau(tau: Any, name: str = "tau", error: type[ValueError] = ValueError) -> float:
    """The exit threshold as a float in (0, 1] (an image exits when the branch's top
    probability is >= tau); ``error`` naming ``name`` and the value otherwise."""
    value = _as_float(tau)
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise error(f"{name} must be a probability in (0, 1] (images exit when the branch's "
                    f"top probability >= tau); got {tau!r}")
    return value


def check_positive(value: Any, name: str, error: type[ValueError] = ValueError,
                   hint: str = "") -> float:
    """``value`` as a finite float > 0; ``error`` naming ``name``, the value (and ``hint``:
    what to do) otherwise (NaN, infinity, 0, negative, a bool or not a number)."""
    number = _as_float(value)
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        tail = f": {hint}" if hint else ""
        raise error(f"{name} must be a finite number > 0; got {value!r}{tail}")
    return number


def check_accel(accel: dict, path: Path) -> None:
    """:class:`BundleError` naming ``path`` and the field unless ``accel/layers.json`` has
    every field the driver reads (filters per layer, feature scale, per stage its layers,
    parameter file and streams: the inputs by role and the output, each with its tensor,
    data type and a shape of the rank the driver packs)."""
    positive_ints(accel, "filters_per_layer", path)
    check_positive(json_field(accel, "feature_scale", path, float, BUILD_HINT),
                   f"{path}: field 'feature_scale'", BundleError, BUILD_HINT)
    for stage, roles in STREAM_RANKS.items():
        json_field(accel, f"stages.{stage}.params", path, str, BUILD_HINT)
        for key in STAGE_LISTS:
            if not json_field(accel, f"stages.{stage}.{key}", path, list, BUILD_HINT):
                raise BundleError(f"{path}: field 'stages.{stage}.{key}' must be a non-empty "
                                  f"list: {BUILD_HINT}")
        inputs = accel["stages"][stage]["inputs"]
        got = [json_field(accel, f"stages.{stage}.inputs.{i}.role", path, str, BUILD_HINT)
               for i in range(len(inputs))]
        if sorted(got) != sorted(roles):
            raise BundleError(f"{path}: the inputs of {stage} have roles {got}; the driver "
                              f"streams {list(roles)}: {BUILD_HINT}")
        streams = [(f"inputs.{i}", roles[r]) for i, r in enumerate(got)]
        for key, rank in streams + [("outputs.0", OUTPUT_RANKS[stage])]:
            field_ = f"stages.{stage}.{key}"
            json_field(accel, f"{field_}.tensor", path, str, BUILD_HINT)
            datatype = json_field(accel, f"{field_}.datatype", path, str, BUILD_HINT)
            if not is_datatype(datatype):
                raise BundleError(f"{path}: field '{field_}.datatype' is {datatype!r}, not a "
                                  f"FINN data type: {BUILD_HINT}")
            shape = positive_ints(accel, f"{field_}.shape", path)
            if len(shape) != rank:
                raise BundleError(f"{path}: field '{field_}.shape' must have {rank} "
                                  f"dimensions; got {shape}: {BUILD_HINT}")


def positive_ints(data: dict, key: str, path: Path) -> list[int]:
    """Field ``key`` as a non-empty list of integers > 0; :class:`BundleError` otherwise."""
    values = json_field(data, key, path, list, BUILD_HINT)
    if not values or not all(type(n) is int and n > 0 for n in values):
        raise BundleError(f"{path}: field {key!r} must be a list of integers > 0; "
                          f"got {values!r:.80}: {BUILD_HINT}")
    return values


def decision_fields(config: dict, path: Path, default_k: int) -> tuple[float, int, int, float]:
    """``(tau, k, k_max, set_mass)`` of ``config.json``; :class:`BundleError` naming ``path``
    and the field if one is missing (tau) or malformed."""
    tau = check_tau(json_field(config, "tau", path, float, RUN_HINT), f"{path}: tau",
                    BundleError)
    k = json_field(config, "k", path, int, RUN_HINT, default=default_k)
    k_max = json_field(config, "k_max", path, int, RUN_HINT, default=0)
    set_mass = json_field(config, "set_mass", path, float, RUN_HINT, default=1.0)
    if not 0.0 < set_mass <= 1.0:  # also rejects NaN
        raise BundleError(f"{path}: field 'set_mass' must be in (0, 1] (the branch probability "
                          f"an adaptive candidate set holds); got {config['set_mass']!r}: "
                          f"{RUN_HINT}")
    return tau, k, k_max, set_mass


def design_digest(accel_dir: Path) -> str:
    """SHA-256 of the exported accelerator (layers.json + stage parameters): what a
    bitstream was built from. The simulated bitstream and driver.json record it."""
    path = accel_dir / LAYERS
    desc = read_json(path, BUILD_HINT)
    try:
        params = [str(spec["params"]) for spec in desc["stages"].values()]
    except (KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path} has no stage parameter files ({exc!r}): {BUILD_HINT}"
                          ) from exc
    h = hashlib.sha256(read_bytes(path, BUILD_HINT))
    for name in params:
        h.update(read_bytes(accel_dir / name, BUILD_HINT))
    return h.hexdigest()


@dataclass
class Deployment:
    """Everything the driver needs from ``<bundle>``: decision parameters, mask table,
    branch, accelerator description (``accel/layers.json``) and clock."""

    root: Path
    k: int
    tau: float
    table: MaskTable
    branch: Branch
    accel: dict
    clk_ns: float
    model_hash: str
    config: dict = field(default_factory=dict)
    k_max: int = 0  # config.json: > k for adaptive sets of k..k_max classes
    set_mass: float = 1.0  # branch probability an adaptive candidate set holds (1.0: fixed k)

    @classmethod
    def load(cls, root: str | Path, model_hash: str | None = None) -> "Deployment":
        """Load and cross-check a bundle; ``model_hash`` pins the expected model."""
        root = Path(root)
        if not root.is_dir():
            raise BundleError(f"bundle folder {root} not found: build one with 'dyfip run' "
                              "and 'dyfip build --estimate' (or 'make deploy' it to the board)")
        config_path = root / names.CONFIG
        config = read_json(config_path, f"not a DyFiP bundle? {RUN_HINT}")
        accel_path = root / ACCEL / LAYERS
        accel = read_json(accel_path, BUILD_HINT)
        check_accel(accel, accel_path)
        est_path = root / ESTIMATES
        estimates = read_json(est_path, BUILD_HINT) if est_path.exists() else {}
        clk_ns = check_positive(json_field(estimates, "clk_ns", est_path, float, BUILD_HINT,
                                           default=DEFAULT_CLK_NS),
                                f"{est_path}: field 'clk_ns'", BundleError, BUILD_HINT)
        try:
            table = MaskTable.load(root / names.TABLES)
        except FileNotFoundError as exc:
            raise BundleError(str(exc)) from exc
        except TableError as exc:
            raise BundleError(f"bundle {root}: {exc}") from exc
        branch = Branch.load(root / names.BRANCH)
        tau, k, k_max, set_mass = decision_fields(config, config_path, table.k)
        dep = cls(root, k, tau, table, branch, accel, clk_ns, table.model_hash, config, k_max,
                  set_mass)
        dep.check(model_hash)
        return dep

    # -- consistency ----------------------------------------------------------------------
    def hashes(self) -> dict[str, str]:
        """Every model hash the bundle records, by file."""
        found = {names.TABLES: self.table.model_hash}
        if self.branch.model_hash:
            found[names.BRANCH] = self.branch.model_hash
        if self.accel.get("model_hash"):
            found[f"{ACCEL}/{LAYERS}"] = str(self.accel["model_hash"])
        ref = self.root / names.REFERENCE
        if ref.exists():
            try:  # HIL ground truth only: unreadable counts as absent here (see reference())
                ref_hash = read_npz(ref, EVALUATE_HINT, ["model_hash"]).get("model_hash")
            except BundleError:
                ref_hash = None
            if ref_hash is not None:
                found[names.REFERENCE] = str(ref_hash)
        return found

    def check(self, model_hash: str | None = None) -> None:
        """Raise :class:`BundleMismatchError` unless all files describe one model."""
        found = self.hashes()
        if model_hash is not None:
            found["expected"] = model_hash
        if len(set(found.values())) > 1:
            listing = ", ".join(f"{k}: {v[:12]}" for k, v in found.items())
            raise BundleMismatchError(f"bundle {self.root} mixes models ({listing}): rebuild "
                                      "it with 'dyfip run' + 'dyfip build' from one model")
        a, t, b = self.accel, self.table, self.branch
        out = self.stage_spec("stage_a")["outputs"][0]["shape"]  # (1, H, W, C)
        problems = []
        if list(t.filters) != list(a["filters_per_layer"]):
            problems.append(f"tables have {t.filters} filters per layer, the accelerator "
                            f"{a['filters_per_layer']}")
        if tuple(out[1:]) != b.feature_shape[1:] + b.feature_shape[:1]:
            problems.append(f"branch expects features {b.feature_shape} (C, H, W), stage A "
                            f"outputs {tuple(out[1:])} (H, W, C)")
        if not np.isclose(b.feature_scale, float(a["feature_scale"]), rtol=1e-6, atol=0):
            problems.append(f"branch feature scale {b.feature_scale:.6g} != stage A output "
                            f"scale {float(a['feature_scale']):.6g}")
        k_max = max(self.k, self.k_max)
        if (t.k, t.k_max) != (self.k, k_max):
            problems.append(f"{names.TABLES} has masks for sets of {t.k}..{t.k_max} classes, "
                            f"{names.CONFIG} asks for {self.k}..{k_max}")
        if t.num_classes != b.num_classes:  # fewer: sets with the missing classes have no mask
            problems.append(f"{names.TABLES} covers {t.num_classes} classes, {names.BRANCH} "
                            f"has {b.num_classes}")
        if problems:
            raise BundleMismatchError(f"bundle {self.root} is inconsistent (files from "
                                      f"different models?): {'; '.join(problems)}")

    # -- accessors -------------------------------------------------------------------------
    @property
    def accel_dir(self) -> Path:
        return self.root / ACCEL

    def stage_spec(self, stage: str) -> dict:
        try:
            return self.accel["stages"][stage]
        except KeyError as exc:
            raise BundleError(f"{self.accel_dir / LAYERS} has no stage {exc}") from exc

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one uint8 image, as PyTorch and reference.npz store them."""
        _, h, w, c = self.stage_spec("stage_a")["inputs"][0]["shape"]
        return (c, h, w)

    @property
    def num_classes(self) -> int:
        return self.branch.num_classes

    def reference(self) -> dict[str, np.ndarray]:
        """reference.npz: test images, labels and the PyTorch pipeline's decisions."""
        return read_npz(self.root / names.REFERENCE, EVALUATE_HINT)
