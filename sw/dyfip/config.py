"""One configuration object for every DyFiP step, with a preset per data set."""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from .tables import Budget, TableError, layer_budgets


@dataclass(frozen=True)
class ConvSpec:
    """One quantized conv block: conv(3x3) -> BN -> QuantReLU [-> 2x2 max-pool]."""

    out_channels: int
    pool: bool = False
    padding: int = 1


WEIGHT_SCALINGS = ("tensor", "channel")
# Captum layer attributions of dyfip.explain, and a random baseline
XAI_METHODS = ("grad_x_act", "integrated_gradients", "conductance", "random")
IMPORTANCE_MODES = ("class", "contrast")
# whole-number settings that must be at least 1
POSITIVE_INTS = ("epochs", "batch_size", "val_every", "xai_samples_per_class", "branch_pool",
                 "sweep_finetune_epochs", "default_pe", "default_simd")


@dataclass(frozen=True)
class Config:
    """Everything a DyFiP run needs; serialised into the bundle as ``config.json``."""

    dataset: str = "digits"
    data_dir: str | None = None
    seed: int = 0
    # network
    stage_a: tuple[ConvSpec, ...] = (ConvSpec(16), ConvSpec(32, pool=True))
    stage_b: tuple[ConvSpec, ...] = (ConvSpec(64), ConvSpec(64, pool=True))
    weight_bits: int = 4
    act_bits: int = 4
    weight_scaling: str = "tensor"  # conv weight scales: "tensor" or "channel" (per filter)
    edge_weight_bits: int = 0  # weights of the first conv and the classifier (0: weight_bits)
    head_hidden: tuple[int, ...] = ()  # fully connected layers before the classifier
    branch_pool: int = 1  # branch = avg-pool(branch_pool) -> QuantLinear
    # training
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    branch_loss_weight: float = 1.0
    branch_distill: float = 3.0  # weight of self-distillation from the final logits
    flip: bool = False  # random horizontal flips (besides the shifts) while training
    max_shift: int = 2  # random shifts of up to this many pixels while training
    shift_per_image: bool = False  # one random shift per image instead of one per batch
    recalibrate_bn: bool = True  # re-estimate BatchNorm statistics on the training set after QAT
    val_every: int = 1  # validation accuracy every N QAT epochs and after the last
    finetune_epochs: int = 30
    finetune_distill: float = 1.0  # distillation from the unpruned network while fine-tuning
    finetune_routed: bool = False  # exit methods fine-tune on the images routed to stage B
    finetune_set_temperature: float = 0.0  # > 0: fine-tuning sets drawn from branch / T
    # decision rule and pruning
    k: int = 2  # candidate classes when the branch does not exit
    k_max: int = 0  # > k: adaptive sets of k..k_max classes holding set_mass (0: always k)
    set_mass: float = 0.95  # branch probability an adaptive candidate set must hold
    tau: float = 0.9
    budget: float | tuple[float, ...] = 0.1875  # kept filter fraction (or one per layer)
    group_size: int = 0  # mask granularity; 0: the PE of each layer in the board's folding
    mask_pe_max: int = 0  # cap on that PE: finer masks, maybe more cycles; 0: no cap
    mask_target_cycles: int = 0  # > 0: replaces the board's target for filter-enable layers
    fixed_target_cycles: int = 0  # > 0: replaces the board's for layers without filter enables
    board: str = "Pynq-Z2"  # FINN folding for cycles and mask groups ("none": default folding)
    permute: bool = True  # cluster co-important filters into PE groups (function unchanged)
    permute_cluster: int = 1  # PE groups per cluster of filters with similar class profiles
    mask_blocks: bool = False  # groups in the fewest input folds of the next layer (equal cycles)
    xai_method: str = "grad_x_act"
    importance_mode: str = "class"  # "class" or "contrast" (see dyfip.tables)
    xai_samples_per_class: int = 64
    # evaluation sweep (empty: only the main point)
    sweep_tau: tuple[float, ...] = (0.7, 0.8, 0.9, 0.95, 0.99)
    sweep_k: tuple[int, ...] = (2, 3)
    sweep_budget: tuple[float, ...] = (0.125, 0.1875, 0.25)
    sweep_finetune_epochs: int = 10  # per (budget, k) sweep point, same for each method
    # default folding for the first cycle estimate: (PE, SIMD) caps per layer
    default_pe: int = 4
    default_simd: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.budget, list):  # per-layer budgets given as a list: hashable tuple
            object.__setattr__(self, "budget", tuple(self.budget))

    @property
    def max_set(self) -> int:
        """The largest candidate set (k, or k_max when sets are adaptive)."""
        return max(self.k, self.k_max)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        data = dict(data)
        for key in ("stage_a", "stage_b"):
            if key in data:
                data[key] = tuple(ConvSpec(**c) if isinstance(c, dict) else c for c in data[key])
        for key in ("head_hidden", "sweep_tau", "sweep_k", "sweep_budget"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def check_types(self) -> None:
        """Every field holds a value of its declared type (``--set k=abc`` names ``k``)."""
        for f in dataclasses.fields(self):
            check_type(f.name, getattr(self, f.name))

    def validate(self, num_classes: int) -> None:
        """Reject settings that cannot work, naming the value."""
        self.check_types()
        self.check_swept(num_classes)
        if self.k_max and not self.k <= self.k_max < num_classes:
            raise ValueError(f"k_max={self.k_max} (adaptive sets of k..k_max classes) must be 0 "
                             f"or in {self.k}..{num_classes - 1}: set it with --set k_max=N, "
                             "or --set k_max=0 for sets of exactly k classes")
        for name in POSITIVE_INTS:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs={self.finetune_epochs} must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        for name in ("branch_loss_weight", "branch_distill", "finetune_distill"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (a loss weight)")
        for name in ("weight_bits", "act_bits"):
            if not 2 <= getattr(self, name) <= 8:
                raise ValueError(f"{name}={getattr(self, name)} must be in 2..8 (FINN's "
                                 "low-bit integer layers)")
        if self.xai_method not in XAI_METHODS:
            raise ValueError(f"xai_method={self.xai_method!r} must be one of {XAI_METHODS}")
        if self.importance_mode not in IMPORTANCE_MODES:
            raise ValueError(f"importance_mode={self.importance_mode!r} must be one of "
                             f"{IMPORTANCE_MODES}")
        if self.edge_weight_bits and not 2 <= self.edge_weight_bits <= 8:
            raise ValueError(f"edge_weight_bits={self.edge_weight_bits} must be 0 (weight_bits) "
                             "or in 2..8")
        if self.weight_scaling not in WEIGHT_SCALINGS:
            raise ValueError(f"weight_scaling={self.weight_scaling!r} must be one of "
                             f"{WEIGHT_SCALINGS}")
        if not 0.0 < self.set_mass <= 1.0:
            raise ValueError(f"set_mass={self.set_mass} must be in (0, 1]")
        if not isinstance(self.max_shift, int) or self.max_shift < 0:
            raise ValueError(f"max_shift={self.max_shift!r} must be a whole number of pixels >= 0")
        if self.finetune_set_temperature < 0:
            raise ValueError(f"finetune_set_temperature={self.finetune_set_temperature} must be "
                             ">= 0 (0: the branch's top-k sets)")
        if self.group_size < 0:
            raise ValueError(f"group_size={self.group_size} must be >= 0 (0: the layer's PE)")
        if self.permute_cluster < 1:
            raise ValueError(f"permute_cluster={self.permute_cluster} must be >= 1 (PE groups "
                             "per cluster)")
        if self.mask_pe_max < 0:
            raise ValueError(f"mask_pe_max={self.mask_pe_max} must be >= 0 (0: no cap)")
        for name in ("mask_target_cycles", "fixed_target_cycles"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0: the board "
                                 "file's)")
        if self.mask_blocks and self.group_size:
            raise ValueError(f"mask_blocks=true places masks in the board folding's input "
                             f"folds: it needs group_size=0 (the PE groups), not "
                             f"{self.group_size}")
        self.check_layers()
        for spec in self.stage_b:
            if self.group_size and spec.out_channels % self.group_size:
                raise ValueError(
                    f"group_size={self.group_size} does not divide a stage-B layer of "
                    f"{spec.out_channels} filters")

    def check_swept(self, num_classes: int) -> None:
        """``tau``, ``k`` and ``budget`` and each value of their ``sweep_*`` lists are in range
        (the message names the field and the value)."""
        def tau(value: float) -> str | None:
            return None if 0.0 < value <= 1.0 else f"{value} must be in (0, 1]"

        def k(value: int) -> str | None:
            return None if 1 <= value < num_classes else (
                f"{value} must be in 1..{num_classes - 1} for {num_classes} classes")

        def budget(value: Budget) -> str | None:
            try:
                layer_budgets(value, len(self.stage_b))
            except TableError as err:
                return str(err)
            return None

        for name, problem in (("tau", tau), ("k", k), ("budget", budget)):
            value, swept = getattr(self, name), list(getattr(self, f"sweep_{name}"))
            if message := problem(value):
                raise ValueError(f"{name}={value}: {message}")
            for point in swept:
                if message := problem(point):
                    raise ValueError(f"sweep_{name}={swept}: {message}")

    def check_layers(self) -> None:
        """Stage A and stage B each have a layer; every conv block's fields have their
        types and ranges (``--set stage_b=[...]`` names the block and field)."""
        hints = typing.get_type_hints(ConvSpec)
        for key in ("stage_a", "stage_b"):
            if not getattr(self, key):
                raise ValueError(f"{key} must have at least one conv block")
            for i, spec in enumerate(getattr(self, key)):
                for f in dataclasses.fields(ConvSpec):
                    value = getattr(spec, f.name)
                    if not _has_type(value, hints[f.name]):
                        raise ValueError(f"{key}[{i}].{f.name}={value!r} must be "
                                         f"{_type_name(hints[f.name])}")
                if spec.out_channels < 1 or spec.padding < 0:
                    raise ValueError(f"{key}[{i}]: out_channels={spec.out_channels} must be "
                                     f">= 1 and padding={spec.padding} >= 0")
        if any(n < 1 for n in self.head_hidden):
            raise ValueError(f"head_hidden={list(self.head_hidden)}: every layer needs >= 1 unit")


def check_type(name: str, value: Any) -> None:
    """Fails, naming the field, unless ``value`` has the type Config declares for ``name``."""
    hint = typing.get_type_hints(Config)[name]
    if not _has_type(value, hint):
        raise ValueError(f"{name}={value!r} must be {_type_name(hint)}")


def _has_type(value: Any, hint: Any) -> bool:
    """``isinstance`` for the annotations Config uses (unions, ``tuple[X, ...]``); ints
    are floats too, bools are neither."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return isinstance(value, tuple) and all(_has_type(v, typing.get_args(hint)[0])
                                                for v in value)
    if hint is type(None):
        return value is None
    if hint in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if hint is float else hint)


def _type_name(hint: Any) -> str:
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "text",
             type(None): "null"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}s"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


PRESETS: dict[str, Config] = {
    # fine-tuning sets drawn from the branch's uncertainty: ~1100 training images are too few
    # to train each of the 45 pair masks on the branch's top-2 sets alone; importance from
    # every training image of a class (~108; 64 before: noisier masks, see docs/experiments.md);
    # +-1 pixel shifts per image (+-2 is a quarter of an 8x8 digit; the full network gains 0.6
    # point, the branch 1.9); candidate sets of 2-3 classes holding 95% of the branch's mass;
    # no distillation while fine-tuning (within the sets the unpruned teacher errs more than
    # DyFiP; fewer per-seed misses on seeds 0-23, see docs/experiments.md)
    "digits": Config(finetune_set_temperature=1.0, xai_samples_per_class=128,
                     max_shift=1, shift_per_image=True, k_max=3, finetune_distill=0.0),
    "fashion-mnist": Config(
        dataset="fashion-mnist",
        # stage A is ~10% of the MACs (DESIGN.md's prototype net)
        stage_a=(ConvSpec(16, pool=True), ConvSpec(32)),
        stage_b=(ConvSpec(64, pool=True), ConvSpec(64), ConvSpec(128, pool=True)),
        weight_scaling="channel", edge_weight_bits=8,
        epochs=20, batch_size=128, lr=3e-3, finetune_epochs=4, sweep_finetune_epochs=2,
        val_every=5,  # 4 validation passes of ~2.5 s instead of 20 (bench under 30 min)
        # 0.3125: the most filters per layer that keeps the worst case <= 0.25x the MACs
        budget=0.3125, k=2, tau=0.9, branch_pool=2,
        # per-class importance from 2048 images per class (256 before: noisier class masks)
        xai_samples_per_class=2048,
        sweep_tau=(0.8, 0.9, 0.95), sweep_k=(2,), sweep_budget=(0.125,),
    ),
    "cifar10": Config(
        dataset="cifar10",
        # FINN's CNV topology (valid 3x3 convs, 2 hidden FC layers), split after conv 3
        stage_a=(ConvSpec(64, padding=0), ConvSpec(64, pool=True, padding=0),
                 ConvSpec(128, padding=0)),
        stage_b=(ConvSpec(128, pool=True, padding=0), ConvSpec(256, padding=0),
                 ConvSpec(256, padding=0)),
        head_hidden=(512, 512), weight_bits=2, act_bits=2, epochs=20, batch_size=128, flip=True,
        budget=0.25, branch_pool=4,
    ),
}


# A smoke test of the whole flow in seconds (tests, CI, notebooks on tiny settings); tau is
# low so that an undertrained branch still takes the early-exit path; adaptive candidate
# sets (2..3 classes) so that the tests run them end to end.
QUICK: dict[str, Any] = dict(epochs=4, finetune_epochs=2, sweep_finetune_epochs=1,
                             xai_samples_per_class=16, tau=0.5, sweep_tau=(0.8,), sweep_k=(2,),
                             sweep_budget=(0.25,), k_max=3, set_mass=0.9)


def parse_setting(text: str) -> tuple[str, Any]:
    """``"lr=1e-3"`` -> ``("lr", 0.001)``: a Config field and its value (JSON, else text)."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in {f.name for f in dataclasses.fields(Config)}:
        raise ValueError(f"--set {text!r}: expected FIELD=VALUE with FIELD one of the config "
                         f"fields ({', '.join(f.name for f in dataclasses.fields(Config))})")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, list):
        try:
            value = tuple(ConvSpec(**v) if isinstance(v, dict) else v for v in value)
        except TypeError as exc:
            raise ValueError(f"--set {text!r}: {exc}") from None
    check_type(key, value)
    return key, value


def parse_budget(text: str) -> float | tuple[float, ...]:
    """``"0.25"`` -> 0.25 (every layer); ``"0.25,0.3125"`` -> one kept fraction per layer."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"budget {text!r}: expected a fraction or comma-separated fractions, "
                         "one per stage-B layer") from None
    return values[0] if len(values) == 1 else values


def preset(dataset: str, quick: bool = False, **overrides: Any) -> Config:
    """The preset for ``dataset`` (``quick``: smoke-test sizes) with ``overrides`` applied
    (None values are ignored)."""
    if dataset not in PRESETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(PRESETS)}")
    changes = {**(QUICK if quick else {}),
               **{k: v for k, v in overrides.items() if v is not None}}
    return PRESETS[dataset].replace(**changes)


__all__ = ["Config", "ConvSpec", "PRESETS", "XAI_METHODS", "parse_budget", "parse_setting", "preset"]
