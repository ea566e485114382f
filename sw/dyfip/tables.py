"""Filter-enable tables: per class subset S, one keep-mask per prunable layer.

Each mask keeps at most ``budget_l * F_l`` filters of layer l (one budget for every layer,
or one per layer), chosen in groups of
``group_sizes[l]`` consecutive filters (the layer's PE: one neuron fold of the accelerator)
that lie in as few blocks of ``block_sizes[l]`` filters as possible (the next layer's SIMD:
one of its input folds), so the worst case over all S is bounded by construction.
numpy only: the board driver loads tables with this module.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from .bundle import read_npz, write_npz
from .decision import pad_sets, set_sizes

TABLE_VERSION = 1
T = TypeVar("T")

Budget = float | tuple[float, ...]  # kept fraction of filters: every layer's, or per layer


class TableError(ValueError):
    """A table is corrupt, of the wrong shape, or belongs to another model."""


def set_key(subset) -> tuple[int, ...]:
    """The class set of a (possibly padded) row of integer class ids, as a sorted tuple."""
    ids = np.asarray(subset)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TableError(f"class ids {ids.ravel().tolist()} must be integers, not {ids.dtype}")
    return tuple(sorted({int(c) for c in ids.ravel()}))


def layer_budgets(budget: Budget, layers: int) -> list[float]:
    """The kept fraction of each of ``layers`` prunable layers, each in (0, 1]."""
    per_layer = [float(b) for b in np.atleast_1d(np.asarray(budget, dtype=np.float64))]
    if bad := [b for b in per_layer if not 0.0 < b <= 1.0]:
        raise TableError(f"budget {bad[0]} must be a kept fraction in (0, 1]")
    if len(per_layer) == 1:
        return per_layer * layers
    if len(per_layer) != layers:
        raise TableError(f"{len(per_layer)} budgets for {layers} prunable layers: give one "
                         "for all or one per layer")
    return per_layer


def candidate_sets(num_classes: int, k: int, k_max: int) -> np.ndarray:
    """Every set of ``k..k_max`` of ``num_classes`` classes as sorted rows of ``k_max`` ids,
    by size, then lexicographic (combinations are sorted, so repeating the last class is
    :func:`dyfip.decision.pad_sets`' canonical form)."""
    sets = [s for j in range(k, k_max + 1) for s in itertools.combinations(range(num_classes), j)]
    return np.array([s + (s[-1],) * (k_max - len(s)) for s in sets], dtype=np.int64)


def check_sizes(what: str, sizes: list[int], layers: int) -> None:
    """``what`` (group / block) sizes: one whole number >= 1 per layer."""
    if len(sizes) != layers:
        raise TableError(f"{len(sizes)} {what} sizes for {layers} layers")
    if not all(isinstance(s, (int, np.integer)) and s >= 1 for s in sizes):
        raise TableError(f"{what}_sizes {list(sizes)} must be whole numbers >= 1")


def class_count(importance: dict[str, np.ndarray]) -> int:
    """The number of classes C of per-layer (C, C, F) attributions, the same for every layer."""
    if not importance:
        raise TableError("importance has no layers: the tables need at least one layer")
    shapes = {name: np.shape(imp) for name, imp in importance.items()}
    if bad := {n: s for n, s in shapes.items() if len(s) != 3 or s[0] != s[1]}:
        raise TableError(f"importance must have shape (C, C, F) per layer; got {bad}")
    counts = {name: s[0] for name, s in shapes.items()}
    if len(set(counts.values())) > 1:
        raise TableError(f"every layer must have the same number of classes; got {counts}")
    return next(iter(counts.values()))


def keep_count(filters: int, budget: float, group_size: int) -> int:
    """Groups kept per mask: ``floor(budget * F / g)``, at least one."""
    if filters % group_size:
        raise TableError(f"group size {group_size} does not divide {filters} filters")
    return max(1, int(np.floor(budget * filters / group_size + 1e-9)))


def block_count(filters: int, budget: float, group_size: int, block_size: int) -> int:
    """Blocks of ``block_size`` filters a mask may touch: the fewest that hold its groups."""
    return -(-keep_count(filters, budget, group_size) * group_size // block_size)


def select_mask(scores: np.ndarray, budget: float, group_size: int, block_size: int = 0
                ) -> np.ndarray:
    """Bool mask keeping the groups with the largest summed score (ties: lower index).

    With ``block_size`` (a multiple of ``group_size``: the input-channel fold of the next
    filter-enable layer) the kept groups lie in the fewest blocks that can hold them, the
    blocks with the best groups; the next layer then skips the same number of input folds
    for every mask, so the worst case over all masks stays that of a single one.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = keep_count(len(scores), budget, group_size)
    groups = scores.reshape(-1, group_size).sum(axis=1)
    allowed = np.ones(len(groups), dtype=bool)
    if block_size > group_size:
        if block_size % group_size or len(scores) % block_size:
            raise TableError(f"block size {block_size} must be a multiple of group size "
                             f"{group_size} and divide {len(scores)} filters")
        per_block = groups.reshape(-1, block_size // group_size)
        best = -np.sort(-per_block, axis=1)[:, :n].sum(axis=1)
        chosen = np.argsort(-best, kind="stable")[:block_count(len(scores), budget,
                                                                group_size, block_size)]
        allowed = np.isin(np.arange(len(groups)) // per_block.shape[1], chosen)
    kept = np.argsort(np.where(allowed, -groups, np.inf), kind="stable")[:n]
    group_mask = np.zeros(len(groups), dtype=bool)
    group_mask[kept] = True
    return np.repeat(group_mask, group_size)


def normalise(importance: np.ndarray) -> np.ndarray:
    """Scale each class's row of a (C, C, F) attribution so classes weigh equally."""
    own = np.einsum("ccf->cf", importance)
    scale = np.abs(own).sum(axis=1, keepdims=True)
    return importance / np.where(scale > 0, scale, 1.0)[:, :, None]


def subset_scores(importance: np.ndarray, subset: tuple[int, ...] | np.ndarray, mode: str
                  ) -> np.ndarray:
    """Per-filter score for class subset S from ``importance[c_img, c_target, f]``.

    ``class``: sum over c in S of the attribution of logit c on images of c.
    ``contrast``: adds, for each ordered pair (a, b) in S, how much a filter separates logit
    a from logit b on images of a: what matters for an argmax restricted to S.
    """
    imp = normalise(np.asarray(importance, dtype=np.float64))
    s = set_key(subset)
    score = sum(imp[c, c] for c in s)
    if mode == "class":
        return score
    if mode == "contrast":
        return score + sum(np.abs(imp[a, a] - imp[a, b]) for a in s for b in s if a != b)
    raise ValueError(f"unknown importance mode {mode!r}; use 'class' or 'contrast'")


@dataclass
class MaskTable:
    """Masks for every class subset of ``k..k_max`` classes, plus the class-agnostic static
    mask. Subsets are rows of width ``k_max``, smaller sets padded (``decision.pad_sets``)."""

    layer_names: list[str]
    subsets: np.ndarray  # int (n, k_max): by size, then lexicographic
    masks: list[np.ndarray]  # per layer: bool (n, F_l)
    static_masks: list[np.ndarray]  # per layer: bool (F_l,)
    budget: Budget
    group_sizes: list[int]  # per layer
    model_hash: str
    mode: str = "class"
    version: int = TABLE_VERSION
    block_sizes: list[int] | None = None  # per layer; None: the group sizes (no constraint)

    @property
    def k(self) -> int:
        """The smallest candidate set."""
        return int(set_sizes(self.subsets).min())

    @property
    def k_max(self) -> int:
        """The largest candidate set (the row width)."""
        return int(self.subsets.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.subsets.max()) + 1

    @property
    def filters(self) -> list[int]:
        return [m.shape[1] for m in self.masks]

    def __post_init__(self) -> None:
        if self.block_sizes is None:
            self.block_sizes = list(self.group_sizes)
        self._index = {set_key(row): i for i, row in enumerate(self.subsets)}

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, importance: dict[str, np.ndarray], k: int, budget: Budget,
              group_sizes: list[int] | int, model_hash: str, mode: str = "class",
              k_max: int | None = None, block_sizes: list[int] | None = None
              ) -> "MaskTable":
        """Tables from per-layer attributions ``importance[name]`` of shape (C, C, F), for
        every set of ``k..k_max`` classes (``k_max`` default: ``k``; ``block_sizes``
        default: the group sizes, i.e. no block constraint)."""
        names = list(importance)
        num_classes = class_count(importance)
        if isinstance(group_sizes, (int, np.integer)):
            group_sizes = [group_sizes] * len(names)
        block_sizes = list(group_sizes) if block_sizes is None else list(block_sizes)
        for what, sizes in (("group", group_sizes), ("block", block_sizes)):
            check_sizes(what, sizes, len(names))
        budgets = layer_budgets(budget, len(names))
        k_max = k if k_max is None else k_max
        if not 1 <= k <= k_max < num_classes:
            raise TableError(f"k={k}, k_max={k_max} must satisfy 1 <= k <= k_max <= "
                             f"{num_classes - 1} for {num_classes} classes")
        subsets = candidate_sets(num_classes, k, k_max)
        masks, static = [], []
        for name, keep, group, block in zip(names, budgets, group_sizes, block_sizes):
            imp = importance[name]
            masks.append(np.stack([select_mask(subset_scores(imp, s, mode), keep, group,
                                               block) for s in subsets]))
            static.append(select_mask(subset_scores(imp, range(num_classes), mode), keep,
                                      group, block))
        table = cls(names, subsets, masks, static, budget, list(group_sizes), model_hash, mode,
                    block_sizes=block_sizes)
        table.validate("built table")  # what load would refuse (e.g. blocks smaller than groups)
        return table

    # -- lookup --------------------------------------------------------------------------
    def index_of(self, subset) -> int:
        key = set_key(subset)
        if key not in self._index:
            bad = [c for c in key if not 0 <= c < self.num_classes]
            sizes = (f"{self.k}" if self.k == self.k_max else f"{self.k} to {self.k_max}")
            why = f"unknown class(es) {bad}" if bad else f"needs {sizes} distinct classes"
            raise TableError(f"no mask for class subset {key}: {why}")
        return self._index[key]

    def masks_for(self, subset) -> list[np.ndarray]:
        i = self.index_of(subset)
        return [m[i] for m in self.masks]

    def batch_masks(self, subsets: np.ndarray) -> list[np.ndarray]:
        """Per layer (N, F_l) masks for N subsets."""
        idx = np.array([self.index_of(s) for s in np.asarray(subsets)], dtype=np.int64)
        return [m[idx] for m in self.masks]

    def mask_vector(self, subset) -> np.ndarray:
        """All layers' filter enables concatenated: the accelerator's mask stream."""
        return np.concatenate(self.masks_for(subset)).astype(np.uint8)

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        arrays = {f"masks_{i}": m for i, m in enumerate(self.masks)}
        arrays.update({f"static_{i}": m for i, m in enumerate(self.static_masks)})
        write_npz(path, version=np.int64(self.version), layer_names=np.array(self.layer_names),
                  subsets=self.subsets, budget=np.asarray(self.budget, dtype=np.float64),
                  group_sizes=np.array(self.group_sizes, dtype=np.int64),
                  block_sizes=np.array(self.block_sizes, dtype=np.int64),
                  model_hash=np.array(self.model_hash),
                  mode=np.array(self.mode), **arrays)

    @classmethod
    def load(cls, path: str | Path, model_hash: str | None = None,
             filters: list[int] | None = None) -> "MaskTable":
        """Load and validate; ``model_hash`` / ``filters`` bind the table to a model."""
        path = Path(path)
        data = read_npz(path, "run 'dyfip finetune' first (it writes the mask tables)",
                        corrupt=TableError)
        read = partial(_field, path, data)
        version = read("version", lambda v: int(_whole(v, 0)))
        if version != TABLE_VERSION:
            raise TableError(f"table {path} has version {version}; this DyFiP reads "
                             f"version {TABLE_VERSION}")
        names = read("layer_names", lambda v: [str(n) for n in v])
        table = cls(names, read("subsets", lambda v: _whole(v, 2).astype(np.int64)),
                    [read(f"masks_{i}", _bools) for i in range(len(names))],
                    [read(f"static_{i}", _bools) for i in range(len(names))],
                    read("budget", _budget), read("group_sizes", _ints),
                    read("model_hash", str), read("mode", str), version,
                    read("block_sizes" if "block_sizes" in data else "group_sizes", _ints))
        table.validate(path)
        if model_hash is not None and table.model_hash != model_hash:
            raise TableError(f"table {path} was built for model {table.model_hash[:12]}..., "
                             f"not for this model {model_hash[:12]}...: rebuild the tables")
        if filters is not None and table.filters != list(filters):
            raise TableError(f"table {path} has layers of {table.filters} filters; the model "
                             f"has {list(filters)}")
        return table

    def validate(self, source: object = "table") -> None:
        n = len(self.subsets)
        if not n:
            raise TableError(f"{source}: subsets is empty: no class set has a mask")
        if self.subsets.ndim != 2 or not self.subsets.shape[1]:
            raise TableError(f"{source}: subsets must be one row of classes per set; got "
                             f"shape {self.subsets.shape}")
        if (len(set(self._index)) != n
                or not np.array_equal(pad_sets(self.subsets, set_sizes(self.subsets)),
                                      self.subsets)):
            raise TableError(f"{source}: subsets are not distinct sorted class sets")
        expected = len(candidate_sets(self.num_classes, self.k, self.k_max))
        if n != expected:  # distinct sets of k..k_max classes: all of them, or one lacks a mask
            raise TableError(f"{source}: masks for {n} class sets, but {self.num_classes} "
                             f"classes have {expected} sets of {self.k}..{self.k_max}")
        layers = len(self.layer_names)
        if not len(self.group_sizes) == len(self.block_sizes) == len(self.masks) == layers:
            raise TableError(f"{source}: {layers} layers but {len(self.masks)} masks, "
                             f"{len(self.group_sizes)} group sizes and "
                             f"{len(self.block_sizes)} block sizes")
        try:
            for what, sizes in (("group", self.group_sizes), ("block", self.block_sizes)):
                check_sizes(what, sizes, layers)
            budgets = layer_budgets(self.budget, layers)
        except TableError as exc:
            raise TableError(f"{source}: {exc}") from exc
        for name, m, s, keep, g, b in zip(self.layer_names, self.masks, self.static_masks,
                                          budgets, self.group_sizes, self.block_sizes):
            if m.ndim != 2 or m.shape[0] != n or s.shape != m.shape[1:]:
                raise TableError(f"{source}: layer {name} masks have shape {m.shape} / "
                                 f"{s.shape}, expected ({n}, F) / (F,)")
            limit = keep_count(m.shape[1], keep, g) * g
            if m.sum(axis=1).max() > limit or s.sum() > limit:
                raise TableError(f"{source}: layer {name} keeps more than its budget of "
                                 f"{limit} filters")
            if b < g or b % g or m.shape[1] % b:
                raise TableError(f"{source}: layer {name} block size {b} is not a multiple "
                                 f"of its group size {g} dividing {m.shape[1]} filters")
            blocks = block_count(m.shape[1], keep, g, b)
            used = np.vstack([m, s[None]]).reshape(n + 1, -1, b).any(axis=2).sum(axis=1)
            if used.max() > blocks:
                raise TableError(f"{source}: layer {name} has masks in {used.max()} blocks "
                                 f"of {b} filters; its budget allows {blocks}")


def _field(path: Path, data: dict[str, np.ndarray], key: str,
           convert: Callable[[np.ndarray], T]) -> T:
    """``convert(data[key])``; a TableError naming the file and the field if that fails."""
    if key not in data:
        raise TableError(f"table file {path} is missing field '{key}'")
    try:
        return convert(data[key])
    except (TypeError, ValueError) as exc:
        raise TableError(f"table file {path}: field '{key}' is malformed: {exc}") from None


def _whole(value: np.ndarray, ndim: int) -> np.ndarray:
    """``value``, checked to be an ``ndim``-dimensional array of whole numbers."""
    if value.ndim != ndim or not np.issubdtype(value.dtype, np.integer):
        raise TypeError(f"expected whole numbers of {ndim} dimension(s), got {value.dtype} "
                        f"of shape {value.shape}")
    return value


def _ints(value: np.ndarray) -> list[int]:
    """A saved list of whole numbers (one per layer)."""
    return [int(v) for v in _whole(value, 1)]


def _bools(value: np.ndarray) -> np.ndarray:
    """Saved masks: booleans (or 0 / 1)."""
    if not (value.dtype == bool or np.isin(value, (0, 1)).all()):
        raise ValueError(f"masks must be 0 / 1, got {value.dtype}")
    return value.astype(bool)


def _budget(value: np.ndarray) -> Budget:
    """A saved budget: a float, or a tuple of per-layer floats."""
    return float(value) if value.ndim == 0 else tuple(float(b) for b in value.ravel())
