"""Accuracy and cost of full / early-exit / static / static+exit / DyFiP on one split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .costs import CostModel, PathCost
from .data import Split
from .decision import restricted_argmax
from .inference import Prediction, StageAOutputs, dyfip_predict, full_predict, stage_a_outputs
from .model import DyFiPNet
from .tables import MaskTable

METHODS = ("full", "early_exit", "static", "static_exit", "dyfip")


@dataclass
class Models:
    """The jointly trained network and the stage-B fine-tunes of each pruned method."""

    base: DyFiPNet
    static: DyFiPNet
    static_exit: DyFiPNet
    dyfip: DyFiPNet


def _metrics(correct: np.ndarray, costs: list[PathCost], worst: PathCost, **extra) -> dict:
    macs = np.array([c.macs for c in costs], dtype=np.float64)
    cycles = np.array([c.cycles for c in costs], dtype=np.float64)
    return {"accuracy": float(correct.mean()), "macs_avg": float(macs.mean()),
            "macs_worst": int(worst.macs), "cycles_avg": float(cycles.mean()),
            "cycles_worst": int(worst.cycles), **extra}


def paired_stats(only: int, only_base: int, n: int) -> dict:
    """Accuracy margin of one method over another on ``n`` shared images, from the images
    only one of them gets right, with the paired (McNemar) standard error of the margin."""
    return {"margin": (only - only_base) / n, "only_this": only, "only_baseline": only_base,
            "paired_se": float(np.sqrt(only + only_base - (only - only_base) ** 2 / n) / n)}


def paired_margin(better: np.ndarray, baseline: np.ndarray) -> dict:
    """``paired_stats`` of two methods' per-image correctness on the same images."""
    only, only_base = int((better & ~baseline).sum()), int((baseline & ~better).sum())
    return paired_stats(only, only_base, len(better))


def evaluate_point(models: Models, table: MaskTable, split: Split, k: int, tau: float,
                   cost: CostModel, methods=METHODS, set_mass: float = 1.0,
                   stage_a: StageAOutputs | None = None) -> dict[str, dict]:
    """Every method at one (k, tau, budget); costs from ``cost`` per decision path.

    Candidate sets hold ``k..table.k_max`` classes (``set_mass``: see ``decision.decide``),
    the same for static+exit and DyFiP. Stage A runs once (``stage_a``, if given, is the
    split's), as every method's network shares it."""
    y = split.labels
    front = dict(stage_a=stage_a if stage_a is not None
                 else stage_a_outputs(models.base, split.images))
    rule = dict(k_max=table.k_max, set_mass=set_mass)
    head = cost.stage_a + cost.branch
    full_b = cost.stage_b()
    static_b = cost.stage_b(table.static_masks)
    out: dict[str, dict] = {}
    if "full" in methods:
        full_correct = full_predict(models.base, split.images, **front) == y
        c = cost.stage_a + full_b
        out["full"] = _metrics(full_correct, [c] * len(y), c)
    # the unpruned stage B on every routed image: early exit, and the within-set reference
    needed = "early_exit" in methods or {"static_exit", "dyfip"} <= set(methods)
    unpruned = (dyfip_predict(models.base, split.images, None, k, tau, **front) if needed
                else None)
    if "early_exit" in methods:
        p = unpruned
        costs = [head if e else head + full_b for e in p.exited]
        out["early_exit"] = _metrics(p.classes == y, costs, head + full_b,
                                     exit_rate=float(p.exited.mean()))
    if "static" in methods:
        pred = full_predict(models.static, split.images, table, **front)
        c = cost.stage_a + static_b
        out["static"] = _metrics(pred == y, [c] * len(y), c)
    if "static_exit" in methods:
        p = dyfip_predict(models.static_exit, split.images, table, k, tau, static=True, **rule,
                          **front)
        static_exit_correct = p.classes == y
        costs = [head if e else head + static_b for e in p.exited]
        out["static_exit"] = _metrics(static_exit_correct, costs, head + static_b,
                                      exit_rate=float(p.exited.mean()))
    if "dyfip" in methods:
        p = dyfip_predict(models.dyfip, split.images, table, k, tau, **rule, **front)
        per_subset = [cost.stage_b(table.masks_for(s)) for s in table.subsets]
        worst_b = PathCost.worst(per_subset)
        costs = [head if e else head + per_subset[table.index_of(s)]
                 for e, s in zip(p.exited, p.decision.subsets)]
        hit = (p.decision.subsets == y[:, None]).any(axis=1)
        wrong, run = p.classes != y, ~p.exited
        out["dyfip"] = _metrics(~wrong, costs, head + worst_b,
                                exit_rate=float(p.exited.mean()),
                                topk_hit_rate=float(hit.mean()),  # the branch's, all images
                                # the label in the set where stage B runs with it
                                routed_hit_rate=float(hit[run].mean() if run.any() else 1.0),
                                # where the errors come from (fractions of all images)
                                errors={"exit": float((wrong & p.exited).mean()),
                                        "set_miss": float((run & ~hit).mean()),
                                        "stage_b": float((wrong & run & hit).mean())},
                                mean_set_size=float(p.decision.set_sizes[run].mean()
                                                    if run.any() else 0.0),
                                branch_top1=float((p.decision.branch_pred == y).mean()))
        if "full" in out:  # DyFiP's gap to the full network, with its precision
            out["dyfip"]["vs_full"] = paired_margin(~wrong, full_correct)
        if "static_exit" in out:
            out["dyfip"]["vs_static_exit"] = paired_margin(~wrong, static_exit_correct)
            out["dyfip"]["within_set_errors"] = within_set_errors(unpruned, p, y,
                                                                  static_exit_correct)
    return out


def within_set_errors(unpruned: Prediction, dyfip: Prediction, labels: np.ndarray,
                      static_exit_correct: np.ndarray) -> dict:
    """Errors inside the candidate set on the images stage B runs with the label in the set
    (shares of all images): DyFiP's, static+exit's (same decisions) and the unpruned stage
    B's (``unpruned``: the base network without a table) restricted to DyFiP's sets: the
    reference the masks' cost is measured against. ``recovered``: the share of static+exit's
    extra errors over the unpruned stage B that DyFiP avoids."""
    same = all(np.array_equal(getattr(unpruned.decision, f), getattr(dyfip.decision, f))
               for f in ("exit", "branch_pred", "confidence"))
    if not same:
        raise RuntimeError("the fine-tuned network's branch decisions differ from the base "
                           "network's: stage A or the branch changed")
    y = labels
    within = ~dyfip.exited & (dyfip.decision.subsets == y[:, None]).any(axis=1)
    wrong = restricted_argmax(unpruned.logits[within], dyfip.decision.subsets[within]) != y[within]
    errors = {"unpruned": float(wrong.sum() / len(y)),
              "static_exit": float((within & ~static_exit_correct).mean()),
              "dyfip": float((within & (dyfip.classes != y)).mean())}
    cost = errors["static_exit"] - errors["unpruned"]
    errors["recovered"] = (errors["static_exit"] - errors["dyfip"]) / cost if cost > 0 else None
    return errors


def with_ratios(results: dict[str, dict]) -> dict[str, dict]:
    """Add ``*_ratio`` fields: each cost over the full network's, from the same run."""
    full = results["full"]
    for r in results.values():
        for key in ("macs_avg", "macs_worst", "cycles_avg", "cycles_worst"):
            r[f"{key}_ratio"] = r[key] / full[key]
    return results


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) not beaten by a cheaper, more accurate one."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(sweep: list[dict], path) -> None:
    """Accuracy vs average and worst-case cycles (ratio to full) per method, Pareto marked."""
    from .plots import pyplot, save_figure

    plt = pyplot()
    colors = {"full": "k", "early_exit": "tab:orange", "static": "tab:gray",
              "static_exit": "tab:blue", "dyfip": "tab:red"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, which in zip(axes, ("cycles_avg_ratio", "cycles_worst_ratio")):
        for method, color in colors.items():
            pts = [(p[method][which], p[method]["accuracy"]) for p in sweep if method in p]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=14, alpha=0.45, color=color)
            front = [pts[i] for i in pareto_front(pts)]
            fx, fy = zip(*front)
            ax.plot(fx, fy, "-o", ms=3, color=color, label=method)
        ax.set_xlabel(which.replace("_", " ") + " (x full network)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle("Accuracy vs modelled cycles over the (tau, k, budget) sweep")
    fig.tight_layout()
    save_figure(fig, path)
