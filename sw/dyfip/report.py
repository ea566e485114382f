"""Human-readable report.md from report.json."""
from __future__ import annotations

from pathlib import Path

from .bundle import write_text
from .evaluate import METHODS
from .targets import describe

LABELS = {"full": "full network", "early_exit": "early exit only", "static": "static pruning",
          "static_exit": "static mask + exit + top-k", "dyfip": "**DyFiP**"}


def _paired(paired: dict | None, split: str = "test", baseline: str = "static+exit") -> str:
    if not paired:
        return ""
    return (f" (paired s.e. {paired['paired_se'] * 100:.2f}: {paired['only_this']} {split} images "
            f"only DyFiP gets right, {paired['only_baseline']} only {baseline})")


def _vs_full(paired: dict | None, split: str = "test") -> str:
    """DyFiP's gap to the full network and its precision (older reports: none)."""
    if not paired:
        return ""
    return (f" DyFiP minus the full network: {paired['margin'] * 100:+.2f} points"
            + _paired(paired, split, "the full network") + ".")


def _row(name: str, r: dict) -> str:
    extra = f"{r['exit_rate']:.1%}" if "exit_rate" in r else "-"
    return (f"| {LABELS[name]} | {r['accuracy']:.2%} | {r['macs_avg_ratio']:.3f} | "
            f"{r['macs_worst_ratio']:.3f} | {r['cycles_avg_ratio']:.3f} | "
            f"{r['cycles_worst_ratio']:.3f} | {extra} |")


def _within_set(errors: dict | None, split: str = "test") -> list[str]:
    """How much of the static mask's cost DyFiP's class masks win back (older reports: none)."""
    if not errors:
        return []
    recovered = errors.get("recovered")
    tail = ("" if recovered is None else
            f": DyFiP avoids {recovered:.0%} of the errors the static mask adds")
    return [f"Stage B wrong within the set, label in the set (share of {split} images): unpruned "
            f"{errors['unpruned']:.2%}, static+exit {errors['static_exit']:.2%}, DyFiP "
            f"{errors['dyfip']:.2%}{tail}.", ""]


def _targets(report: dict) -> list[str]:
    """The data set's targets on this run (older reports and data sets without: none)."""
    targets = report.get("targets")
    if not targets:
        return []
    return [f"Targets ({report['params']['dataset']}, this seed): "
            + "; ".join(describe(name, check) for name, check in targets.items()) + ".", ""]


def _environment(env: dict | None) -> list[str]:
    """Software, CPU kernels and torch threads of the steps (older reports: none): the
    figures reproduce bit for bit only with the same ones."""
    if not env:
        return []

    def described(record: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in record.items() if k != "threads")
    kinds = sorted({described(r) for r in env.values()})
    threads = {step: r["threads"] for step, r in env.items()}
    counts = (f"{next(iter(threads.values()))} in every step" if len(set(threads.values())) == 1
              else ", ".join(f"{step} {n}" for step, n in threads.items()))
    return [f"Environment: {'; '.join(kinds)}; torch threads {counts} (float sums depend on "
            "the threads and CPU kernels: the figures reproduce bit for bit with the same).", ""]


def summary(report: dict) -> str:
    """One console line per method, then the targets this run misses (if it has targets)."""
    lines = [f"{LABELS[m].strip('*'):28s} acc {r['accuracy']:.4f}  macs avg/worst "
             f"{r['macs_avg_ratio']:.3f}/{r['macs_worst_ratio']:.3f}  cycles avg/worst "
             f"{r['cycles_avg_ratio']:.3f}/{r['cycles_worst_ratio']:.3f}"
             for m, r in ((m, report[m]) for m in METHODS)]
    if targets := report.get("targets"):
        missed = [describe(name, check) for name, check in targets.items() if not check["holds"]]
        lines.append(f"targets ({report['params']['dataset']}): "
                     + ("; ".join(missed) if missed else f"all {len(targets)} hold"))
    return "\n".join(lines)


def _weights(params: dict) -> str:
    bits, edge = params["weight_bits"], params.get("edge_weight_bits", params["weight_bits"])
    return (f"{bits}-bit weights" if edge == bits
            else f"{bits}-bit weights ({edge}-bit in the first conv and the classifier)")


def _validation(v: dict | None) -> str:
    if not v:
        return ""
    full = f"full {v['full']:.2%}, " if "full" in v else ""  # reports before it had it
    return (f" On the {v['images']} validation images: {full}static+exit {v['static_exit']:.2%}, "
            f"DyFiP {v['dyfip']:.2%}, margin {v['margin'] * 100:+.2f}" + _paired(v, "validation")
            + "." + _vs_full(v.get("vs_full"), "validation"))


def _sets(p: dict) -> tuple[str, str]:
    """("k=2" or "k=2..3 (...)", the hit-rate label) for fixed or adaptive candidate sets."""
    k, k_max = p["k"], p.get("k_max", p["k"])
    if k_max <= k:
        return f"k={k}", f"top-{k} hit rate"
    return (f"k={k}..{k_max} (sets holding {p['set_mass']:.0%} of the branch's probability)",
            "candidate-set hit rate")


def write_report(report: dict, path: str | Path) -> None:
    p = report["params"]
    d = report["dyfip"]
    sets, hit_rate = _sets(p)
    lines = [
        f"# DyFiP report: {p['dataset']} (seed {p['seed']})", "",
        f"{sets}, tau={p['tau']}, budget={p['budget']}, mask groups {p['group_sizes']}, "
        f"{_weights(p)} / {p['act_bits']}-bit activations, importance "
        f"{p['xai_method']} ({p['importance_mode']}), {p['finetune_epochs']} fine-tuning epochs "
        f"per pruned method; {report['test_images']} test images.", "",
        f"Costs are ratios to the full network in the same run: MACs, and modelled cycles of "
        f"the {p['cycle_model']} (stage-B filter-enable layers skip disabled folds; the "
        f"branch runs on the host: its MACs count, its time is the driver's host overhead).",
        "",
        "| method | accuracy | MACs avg | MACs worst | cycles avg | cycles worst | exit rate |",
        "|---|---|---|---|---|---|---|",
        *[_row(m, report[m]) for m in METHODS],
        "",
        f"Branch top-1 {d['branch_top1']:.2%}, {hit_rate} {d['topk_hit_rate']:.2%} "
        f"({d['routed_hit_rate']:.2%} on the images routed to stage B); "
        f"DyFiP minus static+exit: {report['margin_vs_static_exit'] * 100:+.2f} points"
        + _paired(d.get("vs_static_exit")) + "." + _vs_full(d.get("vs_full"))
        + _validation(report.get("validation")), "",
        "DyFiP's errors by cause (share of test images): " + ", ".join(
            f"{label} {d['errors'][key]:.2%}" for key, label in (
                ("exit", "wrong early exit"), ("set_miss", "label not in the candidate set"),
                ("stage_b", "pruned stage B wrong within the set"))) + ".", "",
        *_targets(report),
        *_within_set(d.get("within_set_errors")),
        *_within_set((report.get("validation") or {}).get("within_set_errors"), "validation"),
        *(["![Pareto front](pareto.png)", ""] if report.get("sweep") else []),
        "![Filter importance](importance.png)", "",
        "Step times (s): " + ", ".join(f"{k} {v}" for k, v in report.get("timings_s", {}).items()),
        "",
        *_environment(report.get("environment")),
    ]
    write_text(path, "\n".join(lines))
