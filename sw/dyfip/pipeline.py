"""The offline DyFiP flow as named steps over one bundle folder (train -> ... -> evaluate)."""
from __future__ import annotations

import dataclasses
import itertools
import json
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.console import Console

from . import __version__, bundle
from .config import Config
from .costs import CostModel, mask_block_sizes
from .data import Dataset, load_dataset
from .evaluate import METHODS, Models, evaluate_point, plot_pareto, with_ratios
from .explain import compute_importance, plot_importance
from .inference import StageAOutputs, dyfip_predict, stage_a_outputs
from .model import DyFiPNet, build_model, load_checkpoint, model_hash, save_checkpoint
from .report import write_report
from .tables import Budget, MaskTable
from .targets import check_targets
from .train import (FrozenOutputs, dynamic_policy, finetune_stage_b, frozen_outputs,
                    static_policy, train_joint)

console = Console(stderr=True)

BASE = "base.pt"
MODEL = "model.pt"  # the deployed DyFiP network: stage A + branch + fine-tuned stage B
BASELINE = "baseline_{}.pt"
# settings a re-evaluation may change (the rest are the fine-tuned network's)
EVALUATION_SETTINGS = frozenset({"tau", "data_dir", "sweep_tau", "sweep_k", "sweep_budget",
                                 "sweep_finetune_epochs"})
# settings the trained weights embody: the later steps refuse to change them (a re-folded
# base.pt saved with 8-bit quantizers on 4-bit weights would be another network)
TRAINING_SETTINGS = frozenset({"dataset", "seed", "stage_a", "stage_b", "weight_bits",
                               "act_bits", "weight_scaling", "edge_weight_bits", "head_hidden",
                               "branch_pool", "epochs", "batch_size", "lr",
                               "branch_loss_weight", "branch_distill", "flip", "max_shift",
                               "shift_per_image", "recalibrate_bn"})
PERMUTATION = "permutation.json"
TIMINGS = "timings.json"  # seconds per step, kept across step-by-step commands
ENVIRONMENT = "environment.json"  # threads, CPU kernels, versions per step, kept likewise
PARETO = "pareto.png"
# the step that writes each bundle file the steps read (named when one is missing or corrupt)
WRITTEN_BY = {BASE: "train", MODEL: "finetune", BASELINE.format("static"): "finetune",
              BASELINE.format("static_exit"): "finetune", bundle.IMPORTANCE: "explain",
              bundle.FOLDING: "fold", PERMUTATION: "fold"}


def rerun(name: str) -> str:
    """What makes bundle file ``name``: ``"run 'dyfip fold' first"``."""
    return f"run 'dyfip {WRITTEN_BY[name]}' first"


@dataclass
class Pipeline:
    """A config and a bundle folder; each step reads what earlier steps wrote there."""

    config: Config
    out: Path
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, dict] = field(default_factory=dict)
    _frozen: tuple[str, FrozenOutputs] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)

    @cached_property
    def data(self) -> Dataset:
        data = load_dataset(self.config.dataset, self.config.data_dir)
        self.config.validate(data.num_classes)
        return data

    def path(self, name: str) -> Path:
        return self.out / name

    def load(self, name: str) -> DyFiPNet:
        p, hint = self.path(name), rerun(name)
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: {hint}")
        return load_checkpoint(p, hint)

    def trained(self) -> DyFiPNet:
        """The trained network (base.pt); refuses settings its weights do not have."""
        base = self.load(BASE)
        self.refuse_changes(base.config, TRAINING_SETTINGS, "trained",
                            "they are fixed by training: run 'dyfip run' with them into "
                            "another --out")
        return base

    def refuse_changes(self, was: Config, names, done: str, remedy: str) -> None:
        """Fail naming every setting in ``names`` this run changes from ``was``."""
        now = self.config
        wrong = [f"{f.name}={getattr(now, f.name)!r} ({done}: {getattr(was, f.name)!r})"
                 for f in dataclasses.fields(Config)
                 if f.name in names and getattr(now, f.name) != getattr(was, f.name)]
        if wrong:
            raise ValueError(f"bundle {self.out} was {done} with other settings: "
                             f"{', '.join(wrong)}; {remedy}")

    def folding(self) -> dict | None:
        """The FINN estimate written by :meth:`fold`; None when the run uses no board.
        Fails when it was folded for other settings: its mask groups would not be the
        accelerator's."""
        if self.config.board == "none":
            return None
        p, hint = self.path(bundle.FOLDING), rerun(bundle.FOLDING)
        est = bundle.read_json(p, hint)
        if self.config.permute and not self.path(PERMUTATION).exists():
            raise FileNotFoundError(f"{self.path(PERMUTATION)} not found: 'dyfip explain' "
                                    "restored the trained filter order; run 'dyfip fold' "
                                    "again (then finetune and evaluate)")
        now = fold_settings(self.config)
        folded_for = bundle.json_field(est, "folded_for", p, dict, hint, default={})
        was = fold_settings(self.config.replace(**folded_for))
        changed = [f"{k}={now[k]!r} (folded for {was[k]!r})" for k in now if was[k] != now[k]]
        if changed:
            raise ValueError(f"{p} was folded for other settings: {', '.join(changed)}; run "
                             "'dyfip fold' with them first (then finetune and evaluate)")
        return est

    def cost_model(self, model: DyFiPNet) -> CostModel:
        c = self.config
        return CostModel.from_folding(model.geometry, c.default_pe, c.default_simd,
                                      self.folding())

    # -- steps -----------------------------------------------------------------------------
    def train(self) -> None:
        model = build_model(self.config, self.data.image_shape, self.data.num_classes)
        history = train_joint(model, self.data, self.config)
        save_checkpoint(model, self.path(BASE))
        bundle.write_json(self.path("train_history.json"), history)
        console.print(f"trained: val accuracy {history[-1]['val_accuracy']:.4f}")

    def explain(self) -> None:
        base = self.trained()
        model, _ = self.unpermuted(base)
        imp = compute_importance(model, self.data.train, self.config.xai_method,
                                 self.config.xai_samples_per_class, self.config.seed)
        with bundle.written_together():  # all or none: base and importance in one order
            if model is not base:  # explain in the trained filter order; fold permutes again
                save_checkpoint(model, self.path(BASE))
            bundle.write_npz(self.path(bundle.IMPORTANCE), **imp)
        self.path(PERMUTATION).unlink(missing_ok=True)
        plot_importance(imp, self.path("importance.png"), self.data.classes)

    def importance(self) -> dict[str, np.ndarray]:
        return bundle.read_npz(self.path(bundle.IMPORTANCE), rerun(bundle.IMPORTANCE))

    def unpermuted(self, base: DyFiPNet, imp: dict[str, np.ndarray] | None = None
                   ) -> tuple[DyFiPNet, dict[str, np.ndarray] | None]:
        """``base`` (and ``imp``) back in the trained filter order when an earlier fold
        permuted them (explain and fold start from there)."""
        p = self.path(PERMUTATION)
        if not p.exists():
            return base, imp
        from dyfip_hw.permute import permute_importance, permute_model

        hint = rerun(PERMUTATION)
        perms = bundle.json_field(bundle.read_json(p, hint), "perms", p, dict, hint)
        inverse = {k: np.argsort(v) for k, v in perms.items()}
        return (permute_model(base, inverse),
                None if imp is None else permute_importance(imp, inverse))

    def fold(self) -> None:
        """Fold the base network for the board (FINN estimate build): mask groups = PE; then
        permute filters so co-important ones share a group (the function is unchanged)."""
        c = self.config
        if c.board == "none":
            return
        from dyfip_hw.build import estimate_accelerators, shortfall
        from dyfip_hw.permute import apply_permutation, fold_gain

        base, imp = self.unpermuted(self.trained(), self.importance())
        base.config = c  # this run's settings (budget, mask_pe_max ...) travel with the weights
        with tempfile.TemporaryDirectory(prefix="dyfip-fold-") as tmp:
            est, _, _ = estimate_accelerators(base, tmp, c.board, mask_keep=c.budget)
        est["folded_for"] = fold_settings(self.config)
        if not est["fits"]:
            console.print(f"[yellow]note:[/] by FINN's estimate this folding does not fit "
                          f"{c.board} ({shortfall(est)}); its figures hold, but 'dyfip build "
                          "--bitstream' will refuse it and name slower cycle targets that fit")
        permutation = None
        if c.permute:
            before = fold_gain(imp, est, c.budget, c.k, mode=c.importance_mode)
            blocks = mask_block_sizes(est["stages"]["stage_b"]) if c.mask_blocks else None
            base, imp, perms = apply_permutation(base, imp,
                                                 self.cluster_sizes(est, base, blocks), blocks)
            after = fold_gain(imp, est, c.budget, c.k, mode=c.importance_mode)
            permutation = {"perms": {k: v.tolist() for k, v in perms.items()},
                           "unpermuted": before, "permuted": after}
        if not permutation:  # first: base and importance stay in one order either way
            self.path(PERMUTATION).unlink(missing_ok=True)
        with bundle.written_together():  # all or none: base and importance in one order
            save_checkpoint(base, self.path(BASE))
            bundle.write_npz(self.path(bundle.IMPORTANCE), **imp)
            if permutation:
                bundle.write_json(self.path(PERMUTATION), permutation)
            bundle.write_json(self.path(bundle.FOLDING), est)

    def cluster_sizes(self, est: dict, model: DyFiPNet,
                      blocks: dict[str, int] | None = None) -> dict[str, int]:
        """Filters per cluster of the permutation: ``permute_cluster`` PE groups per layer,
        so consecutive groups share classes too; they must tile the layer and its mask
        ``blocks`` (``mask_blocks``)."""
        n = self.config.permute_cluster
        filters = dict(zip(model.prunable_layers, model.filters_per_layer))
        sizes = {name: int(g) * n for name, g in est["group_size"].items()}
        for name, size in sizes.items():
            block = (blocks or {}).get(name, 0)
            if filters[name] % size:
                raise ValueError(f"permute_cluster={n}: clusters of {size} filters do not "
                                 f"divide layer {name}'s {filters[name]} filters")
            if block > size and block % size:
                raise ValueError(f"permute_cluster={n}: clusters of {size} filters do not "
                                 f"tile layer {name}'s mask blocks of {block} filters "
                                 "(mask_blocks)")
        return sizes

    def set_rule(self, k: int) -> tuple[int, float]:
        """(k_max, set_mass) of candidate sets starting at ``k``: the config's adaptive
        sets for its own k, fixed sets of k classes for other sweep points."""
        c = self.config
        return (c.max_set, c.set_mass) if k == c.k else (k, 1.0)

    def table(self, model: DyFiPNet, k: int, budget: Budget) -> MaskTable:
        """Masks for every candidate set at ``budget``, bound to ``model``'s weights."""
        c = self.config
        cost = self.cost_model(model)
        groups = c.group_size or cost.group_sizes
        blocks = cost.block_sizes if c.mask_blocks else None
        return MaskTable.build(self.importance(), k, budget, groups, model_hash(model),
                               c.importance_mode, k_max=self.set_rule(k)[0],
                               block_sizes=blocks)

    def frozen_outputs(self, base: DyFiPNet) -> FrozenOutputs:
        """Stage A / branch / teacher outputs of ``base`` on the training images, computed
        once per run and shared by every fine-tune (they depend on ``base`` only)."""
        key = model_hash(base)
        if self._frozen is None or self._frozen[0] != key:
            self._frozen = (key, frozen_outputs(base, self.data.train))
        return self._frozen[1]

    def finetune_all(self, base: DyFiPNet, budget: Budget, k: int, epochs: int,
                     which=("static", "static_exit", "dyfip")
                     ) -> tuple[MaskTable, dict[str, DyFiPNet]]:
        """Fine-tune stage B for each pruned method at ``budget``, same effort for each.

        With ``finetune_routed`` the early-exit methods train on the images the branch routes
        to stage B at the run's tau, for as many image steps as ``epochs`` over all images
        (rounded to whole epochs): each method on the images it sees at run time."""
        c = self.config
        table = self.table(base, k, budget)
        mass = self.set_rule(k)[1]
        temp = c.finetune_set_temperature
        policies: dict[str, Callable] = {
            "static": static_policy(table, False),
            "static_exit": static_policy(table, True, mass, c.seed, temp),
            "dyfip": dynamic_policy(table, mass, c.seed, temp)}
        every = self.frozen_outputs(base)
        routed = every.routed(c.tau) if c.finetune_routed else every
        tuned = {}
        for m in which:
            images = every if m == "static" else routed
            passes = epochs and max(1, round(epochs * len(every) / len(images)))
            tuned[m] = finetune_stage_b(base, self.data, c, policies[m], passes,
                                        desc=f"fine-tune {m} @ budget {budget}, k={k}",
                                        frozen=images)
        return table, tuned

    def finetune(self) -> None:
        """Main-budget fine-tunes; writes model.pt, the baselines, tables and branch.npz."""
        base = self.trained()
        c = self.config
        table, tuned = self.finetune_all(base, c.budget, c.k, c.finetune_epochs)
        for m in tuned.values():
            m.config = c  # the run's settings (budget, k) travel with the weights
        table.model_hash = model_hash(tuned["dyfip"])
        with bundle.written_together():  # all or none: evaluate pairs them by the config
            for method in ("static", "static_exit"):
                save_checkpoint(tuned[method], self.path(BASELINE.format(method)))
            save_checkpoint(tuned["dyfip"], self.path(MODEL))
            table.save(self.path(bundle.TABLES))
            write_branch(tuned["dyfip"], self.path(bundle.BRANCH))

    def evaluate(self) -> dict:
        """Every method on the test split (and the sweep): the report, which :meth:`run`
        writes with the step timings."""
        c = self.config
        base = self.trained()
        deployed = self.load(MODEL)
        self.check_settings_of(deployed)
        table = MaskTable.load(self.path(bundle.TABLES), model_hash(deployed),
                               deployed.filters_per_layer)
        models = Models(base, self.load(BASELINE.format("static")),
                        self.load(BASELINE.format("static_exit")), deployed)
        cost = self.cost_model(base)
        test = stage_a_outputs(base, self.data.test.images)  # shared by every evaluation
        main = with_ratios(evaluate_point(models, table, self.data.test, c.k, c.tau, cost,
                                          set_mass=c.set_mass, stage_a=test))
        sweep = self.sweep(models, cost, main["full"], test)
        self.path(PARETO).unlink(missing_ok=True)  # none without a sweep (--no-sweep)
        if sweep:
            plot_pareto(sweep, self.path(PARETO))
        write_reference(deployed, table, self.data, c, self.path(bundle.REFERENCE), test)
        report = {m: main[m] for m in METHODS}
        report["params"] = {"dataset": c.dataset, "k": c.k, "k_max": c.max_set,
                            "set_mass": c.set_mass, "tau": c.tau, "budget": c.budget,
                            "seed": c.seed, "group_sizes": table.group_sizes,
                            "board": c.board, "cycle_model": cost.source,
                            "permuted": c.permute and c.board != "none",
                            "xai_method": c.xai_method, "importance_mode": c.importance_mode,
                            "finetune_epochs": c.finetune_epochs, "epochs": c.epochs,
                            "weight_bits": c.weight_bits, "act_bits": c.act_bits,
                            "edge_weight_bits": c.edge_weight_bits or c.weight_bits}
        report["config"] = json.loads(c.to_json())  # every setting, for `dyfip aggregate`
        report["dyfip_version"] = __version__
        report["test_images"] = len(self.data.test)
        report["margin_vs_static_exit"] = main["dyfip"]["accuracy"] - main["static_exit"]["accuracy"]
        report["validation"] = self.validation_margin(models, table, cost)
        report["targets"] = check_targets(report)
        if (p := self.path(PERMUTATION)).exists():
            hint = rerun(PERMUTATION)
            perm = bundle.read_json(p, hint)
            report["permutation"] = {
                k: {f: bundle.json_field(perm, f"{k}.{f}", p, object, hint)
                    for f in ("mean_enabled_folds", "mean_stage_b_cycles")}
                for k in ("unpermuted", "permuted")}
        report["sweep"] = sweep
        return report

    def check_settings_of(self, deployed: DyFiPNet) -> None:
        """Evaluate only what was fine-tuned: every setting but tau and the sweep's must be
        the deployed network's (budget, k, mask groups ... shape its tables and weights)."""
        names = {f.name for f in dataclasses.fields(Config)} - EVALUATION_SETTINGS
        self.refuse_changes(deployed.config, names, "fine-tuned",
                            "run 'dyfip finetune' with them first")

    def validation_margin(self, models: Models, table: MaskTable, cost: CostModel) -> dict:
        """Full network, static+exit and DyFiP on the validation split (held out from
        training): a second, independent measure of the margin, of DyFiP's gap to the full
        network and of the within-set errors, to check a change against before trusting it."""
        c = self.config
        r = evaluate_point(models, table, self.data.val, c.k, c.tau, cost,
                           ("full", "static_exit", "dyfip"), set_mass=c.set_mass)
        return {"images": len(self.data.val), "full": r["full"]["accuracy"],
                "static_exit": r["static_exit"]["accuracy"],
                "dyfip": r["dyfip"]["accuracy"], **r["dyfip"]["vs_static_exit"],
                "vs_full": r["dyfip"]["vs_full"],
                "within_set_errors": r["dyfip"]["within_set_errors"]}

    def sweep(self, models: Models, cost: CostModel, full: dict, test: StageAOutputs
              ) -> list[dict]:
        """Every (budget, k, tau) of the config; stage B fine-tuned once per (budget, k);
        ``test``: the test images' stage-A outputs."""
        c = self.config
        points: list[dict] = []
        if not (c.sweep_budget or c.sweep_k or c.sweep_tau):
            return points
        grid = itertools.product(sorted(set(c.sweep_budget) | {c.budget}, key=np.mean),
                                 sorted(k for k in set(c.sweep_k) | {c.k}
                                        if k < models.base.num_classes))
        for budget, k in grid:
            if (budget, k) == (c.budget, c.k):
                epochs, tuned = c.finetune_epochs, {"static_exit": models.static_exit,
                                                    "dyfip": models.dyfip}
                table = self.table(models.base, k, budget)
            else:
                epochs = c.sweep_finetune_epochs
                table, tuned = self.finetune_all(models.base, budget, k, epochs,
                                                 ("static_exit", "dyfip"))
            ms = Models(models.base, models.static, tuned["static_exit"], tuned["dyfip"])
            for tau in sorted(set(c.sweep_tau) | {c.tau}):
                r = evaluate_point(ms, table, self.data.test, k, tau, cost,
                                   ("early_exit", "static_exit", "dyfip"),
                                   set_mass=self.set_rule(k)[1], stage_a=test)
                r["full"] = full
                points.append({"budget": budget, "k": k, "k_max": table.k_max, "tau": tau,
                               "finetune_epochs": epochs,
                               **with_ratios(r)})
        return points

    def build(self) -> None:
        """The accelerator of the deployed network (estimates.json, accel/) for the board."""
        if self.config.board == "none":
            return
        from dyfip_hw.build import main as build_main

        build_main(self.out, self.config.board)

    STEPS = ("train", "explain", "fold", "finetune", "evaluate", "build")

    def per_step(self, name: str, current: dict) -> dict:
        """``current`` {step: record} over what earlier commands recorded in ``name``."""
        p = self.path(name)
        hint = "delete it (it only records the earlier steps) or re-run 'dyfip train'"
        return {**(bundle.read_json(p, hint) if p.exists() else {}), **current}

    def step_timings(self) -> dict[str, float]:
        """Seconds per step of this bundle's run, also of steps run by earlier commands."""
        return self.per_step(TIMINGS, self.timings)

    def run(self, steps=STEPS) -> dict | None:
        """Run ``steps`` in order; returns the report when ``evaluate`` is among them."""
        if self.config.board != "none":
            from dyfip_hw.boards import load_board
            load_board(self.config.board)  # an unknown board fails now, not after training
        self.data  # noqa: B018  (loads the data set and checks the settings against it)
        if "train" in steps:
            self.out.mkdir(parents=True, exist_ok=True)
        elif not self.out.is_dir():
            raise FileNotFoundError(f"bundle folder {self.out} not found: run 'dyfip run' "
                                    f"(or 'dyfip train') with --out {self.out} first")
        report = None
        for step in steps:
            console.print(f"[bold]dyfip {step}[/] -> {self.out}")
            t0 = time.perf_counter()
            if step == "train":  # a new network: earlier timings and folding are another's
                for name in (TIMINGS, ENVIRONMENT, bundle.FOLDING, PERMUTATION):
                    self.path(name).unlink(missing_ok=True)
            result = getattr(self, step)()
            report = result if step == "evaluate" else report
            # the settings of the bundle's latest steps: a step re-run with overrides (e.g.
            # ``dyfip evaluate --tau 0.95``) leaves the driver the report's k, tau and budget
            bundle.write_text(self.path(bundle.CONFIG), self.config.to_json())
            self.timings[step] = round(time.perf_counter() - t0, 2)
            self.environment[step] = software_environment()
            bundle.write_json(self.path(TIMINGS), self.step_timings())
            bundle.write_json(self.path(ENVIRONMENT), self.per_step(ENVIRONMENT, self.environment))
            if report is not None:  # again after build: the step times include it
                self.save_report(report)
        return report

    def save_report(self, report: dict) -> None:
        """report.json and report.md, with the seconds per step so far."""
        report["timings_s"] = self.step_timings()
        report["environment"] = self.per_step(ENVIRONMENT, self.environment)
        bundle.write_json(self.path(bundle.REPORT_JSON), report)
        write_report(report, self.path(bundle.REPORT_MD))


def software_environment() -> dict:
    """What a step's float results depend on besides the config: torch's thread count and
    CPU kernels (AVX2, AVX512, ...; both change how float sums are split and rounded) and
    the versions."""
    import platform
    from importlib.metadata import version

    return {"threads": torch.get_num_threads(), "cpu": torch.backends.cpu.get_cpu_capability(),
            "python": platform.python_version(),
            **{name: version(name) for name in ("torch", "brevitas", "captum")}}


def fold_settings(config: Config) -> dict:
    """The settings a folding depends on (the board, the budget, PE cap and cycle target that
    steer the filter-enable layers' PE, i.e. the mask groups, and the other layers' target)."""
    return {"board": config.board, "budget": config.budget, "mask_pe_max": config.mask_pe_max,
            "mask_target_cycles": config.mask_target_cycles,
            "fixed_target_cycles": config.fixed_target_cycles}


def write_branch(model: DyFiPNet, path: Path) -> None:
    """The coarse branch as numpy arrays for the host driver (no torch on the board)."""
    linear = model.branch[2]
    act = model.stage_a[-1].act
    with torch.no_grad():
        bundle.write_npz(path, weight=linear.quant_weight().value.double().numpy(),
                         bias=linear.bias.double().numpy(),
                         feature_scale=np.float64(act.act_quant.scale().item()),
                         feature_shape=np.array(model.feature_shape),
                         pool=np.int64(model.config.branch_pool),
                         model_hash=np.array(model_hash(model)))


def write_reference(model: DyFiPNet, table: MaskTable, data: Dataset, config: Config,
                    path: Path, stage_a: StageAOutputs | None = None) -> None:
    """Test images with the reference path, subset and class: the HIL tests' ground truth
    (``stage_a``: the test images' stage-A outputs if already computed)."""
    p = dyfip_predict(model, data.test.images, table, config.k, config.tau,
                      k_max=config.max_set, set_mass=config.set_mass, stage_a=stage_a)
    bundle.write_npz(path, images=data.test.images, labels=data.test.labels,
                     classes=p.classes, exited=p.exited, subsets=p.decision.subsets,
                     confidence=p.decision.confidence, k=np.int64(config.k),
                     k_max=np.int64(config.max_set), set_mass=np.float64(config.set_mass),
                     tau=np.float64(config.tau), model_hash=np.array(model_hash(model)))


def bundle_board(out: Path) -> str:
    """The board a bundle was folded for (its config.json), Pynq-Z2 by default."""
    p = Path(out) / bundle.CONFIG
    board = read_config(p).board if p.exists() else "Pynq-Z2"
    if board == "none":
        raise ValueError(f"bundle {out} was made without a board (--board none): pass --board")
    return board


def read_config(path: Path) -> Config:
    """A bundle's config.json; a corrupt or foreign file names itself."""
    data = bundle.read_json(path, "make the bundle again with 'dyfip run' (or 'dyfip train')")
    try:
        return Config.from_dict(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path} does not hold a DyFiP config ({exc})") from None


def load_config(out: Path, overrides: dict, fresh: bool, quick: bool = False) -> Config:
    """The dataset preset (``fresh``; ``quick``: smoke-test sizes) or the bundle's
    config.json, with ``overrides``."""
    from .config import preset

    overrides = {k: v for k, v in overrides.items() if v is not None}
    p = Path(out) / bundle.CONFIG
    if fresh or not p.exists():
        return preset(overrides.pop("dataset", "digits"), quick, **overrides)
    config = read_config(p)
    if overrides.get("dataset", config.dataset) != config.dataset:
        raise ValueError(f"bundle {out} holds a {config.dataset} run, not "
                         f"{overrides['dataset']}: use another --out")
    return config.replace(**overrides)
