"""Summarise several runs' report.json (e.g. seeds): mean and standard error per figure."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from .bundle import write_json
from .evaluate import METHODS, paired_stats
from .targets import TARGETS, check_targets

FIELDS = ("accuracy", "macs_avg_ratio", "macs_worst_ratio", "cycles_avg_ratio",
          "cycles_worst_ratio")


def mean_se(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "se": se, "values": v.tolist()}


def report_path(path: Path) -> Path:
    """``path`` itself, or the ``report.json`` of a bundle folder."""
    path = Path(path)
    report = path / "report.json" if path.is_dir() else path
    if not report.is_file():
        raise FileNotFoundError(f"no report at {report}: run `dyfip evaluate` for that bundle "
                                "first")
    return report


def load_report(path: Path) -> dict:
    """A run's report.json, checked to name its seed and data set."""
    report = report_path(path)
    try:
        data = json.loads(report.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{report} is not a valid report.json: {exc}") from None
    params = data.get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict) or not {"seed", "dataset"} <= params.keys():
        raise ValueError(f"{report} is not a run's report.json (no params.seed / "
                         "params.dataset; an aggregate summary?)")
    return data


# settings that may differ between the seeds of one configuration: the seed, where the data
# lives, and the sweep (the aggregate reads the main point only, e.g. of `--no-sweep` runs too)
PER_RUN = ("seed", "data_dir", "sweep_tau", "sweep_k", "sweep_budget", "sweep_finetune_epochs")


def settings(run: dict) -> dict:
    """A run's settings: every config field (reports since ``config`` was added) and the
    ``params`` (data set, k, tau, budget, ... and the mask groups the folding gave)."""
    return {**run.get("config", {}), **run["params"]}


def check_one_configuration(runs: list[dict]) -> None:
    """Refuse runs whose settings besides the seed differ: the statistics are over seeds
    of one configuration."""
    shared = set.intersection(*(set(settings(r)) for r in runs)) - set(PER_RUN)
    values = {k: sorted({json.dumps(settings(r)[k], sort_keys=True) for r in runs})
              for k in sorted(shared)}
    if mixed := {k: v for k, v in values.items() if len(v) > 1}:
        raise ValueError("reports mix settings: " + "; ".join(
            f"{'data sets' if k == 'dataset' else k} {' / '.join(v)}" for k, v in mixed.items()))


def check_seeds(loaded: list[tuple[dict, Path]]) -> None:
    """Refuse runs sharing a seed (two variants, or one report given twice): the statistics
    assume independent seeds of one configuration."""
    paths: dict[object, list[str]] = {}
    for run, path in loaded:
        paths.setdefault(run["params"]["seed"], []).append(str(path))
    if repeated := {seed: p for seed, p in paths.items() if len(p) > 1}:
        raise ValueError("runs repeat a seed, but the statistics assume independent seeds: "
                         + "; ".join(f"seed {seed} in {', '.join(p)}"
                                     for seed, p in repeated.items()))


def pooled(comparisons: dict[str, list[dict | None]], images: list[int | None]) -> dict:
    """Each paired comparison (name -> every run's ``only_this`` / ``only_baseline`` counts)
    over the images of every run together (``images``: each run's count), as
    ``pooled_<name>`` with ``images``; a comparison some run's report predates is left out."""
    out = {}
    for name, counts in comparisons.items():
        if any(c is None or "only_this" not in c for c in counts) or None in images:
            continue
        total = sum(images)
        out[f"pooled_{name}"] = {**paired_stats(sum(c["only_this"] for c in counts),
                                                sum(c["only_baseline"] for c in counts), total),
                                 "images": total}
    return out


def validation_summary(runs: list[dict]) -> dict | None:
    """The same comparisons on every run's validation split (held out from training: a
    second, independent measure); None when a run's report predates it."""
    splits = [r.get("validation") for r in runs]
    if any(v is None for v in splits):
        return None
    return {"margin": mean_se([v["margin"] for v in splits]),
            "gap": mean_se([v["full"] - v["dyfip"] for v in splits]),
            **pooled({"vs_static_exit": splits, "vs_full": [v.get("vs_full") for v in splits]},
                     [v.get("images") for v in splits])}


def targets_held(runs: list[dict]) -> dict[str, dict]:
    """Per target of the data set: on how many runs it holds and the seeds it misses."""
    checks = [check_targets(r) for r in runs]
    return {name: {"held": sum(c[name]["holds"] for c in checks), "runs": len(runs),
                   "missed_seeds": [r["params"]["seed"] for r, c in zip(runs, checks)
                                    if not c[name]["holds"]]}
            for name in (checks[0] if checks else {})}


def machines(runs: list[dict]) -> dict[str, int]:
    """Runs per kind of machine that trained them (CPU kernels, torch threads: a seed is a
    draw per kind); "not recorded" for reports from before ``environment.json``."""

    def kind(run: dict) -> str:
        train = (run.get("environment") or {}).get("train")
        return f"{train['cpu']}, {train['threads']} threads" if train else "not recorded"
    return dict(Counter(kind(r) for r in runs))


def aggregate(reports: list[Path]) -> dict:
    """Mean and standard error over runs (report.json files or bundle folders) of every
    method's figures and DyFiP's margin."""
    if not reports:
        raise ValueError("no report.json given")
    loaded = sorted(((load_report(p), p) for p in reports),  # by seed, not by folder name
                    key=lambda rp: (rp[0]["params"]["seed"], str(rp[1])))
    runs, reports = [r for r, _ in loaded], [p for _, p in loaded]
    check_one_configuration(runs)
    check_seeds(loaded)
    out = {"runs": [str(p) for p in reports], "seeds": [r["params"]["seed"] for r in runs],
           "dataset": runs[0]["params"]["dataset"], "machines": machines(runs)}
    for m in METHODS:
        out[m] = {f: mean_se([r[m][f] for r in runs]) for f in FIELDS}
    out["margin_vs_static_exit"] = mean_se([r["margin_vs_static_exit"] for r in runs])
    out["gap_to_full"] = mean_se([r["full"]["accuracy"] - r["dyfip"]["accuracy"] for r in runs])
    # each run's margin is measured on one test set: its paired s.e. (None: older reports)
    out["margin_paired_se"] = [r["dyfip"].get("vs_static_exit", {}).get("paired_se")
                               for r in runs]
    out["gap_paired_se"] = [r["dyfip"].get("vs_full", {}).get("paired_se") for r in runs]
    out |= pooled({c: [r["dyfip"].get(c) for r in runs] for c in ("vs_static_exit", "vs_full")},
                  [r.get("test_images") for r in runs])  # one paired figure over all runs
    if targets := targets_held(runs):
        out["targets"] = targets
    if validation := validation_summary(runs):
        out["validation"] = validation
    recovered = [r["dyfip"].get("within_set_errors", {}).get("recovered") for r in runs]
    if None not in recovered:  # share of the static mask's extra errors DyFiP avoids
        out["recovered"] = mean_se(recovered)
    return out


def _se(value: float | None) -> str:
    """A paired standard error in points, '-' for reports that predate it."""
    return f"{'-' if value is None else f'{100 * value:.2f}':>6s}"


def _held(target: dict) -> str:
    """E.g. ``22/24 (missed: seeds 10, 12)``."""
    missed = ", ".join(map(str, target["missed_seeds"]))
    return f"{target['held']}/{target['runs']}" + (f" (missed: seeds {missed})" if missed else "")


def _points(figure: dict, sign: bool = False) -> str:
    """A mean +- s.e. (fractions) in points."""
    return f"{100 * figure['mean']:{'+' if sign else ''}.2f} +- {100 * figure['se']:.2f}"


def _pooled_line(figures: dict, split: str) -> str:
    """The pooled paired comparisons of ``figures`` (the summary, or its validation part)."""
    p, f = figures["pooled_vs_static_exit"], figures.get("pooled_vs_full")
    line = (f"pooled over {p['images']} {split} predictions (runs x {split} images): DyFiP - "
            f"static_exit {100 * p['margin']:+.2f} +- {100 * p['paired_se']:.2f}")
    if f is not None:  # vs_full's margin is DyFiP - full: the gap is its negative
        line += f"; full - DyFiP {-100 * f['margin']:.2f} +- {100 * f['paired_se']:.2f}"
    return line + " points (paired s.e.)"


def format_summary(summary: dict) -> str:
    trained = "; ".join(f"{kind} ({n} run{'s' * (n != 1)})"
                        for kind, n in summary.get("machines", {}).items())
    lines = [f"{summary['dataset']}: {len(summary['runs'])} runs, seeds {summary['seeds']}"
             + (f"; trained on {trained}" if trained else ""),
             f"{'seed':>4s} {'full':>7s} {'static_exit':>11s} {'dyfip':>7s} {'margin':>7s} "
             f"{'+-p.se':>6s} {'gap':>6s} {'+-p.se':>6s}"]
    # the targets hold per seed, not on average: every run's figures side by side
    columns = [summary[m]["accuracy"]["values"] for m in ("full", "static_exit", "dyfip")]
    columns += [summary[f]["values"] for f in ("margin_vs_static_exit", "gap_to_full")]
    paired = [summary[f] for f in ("margin_paired_se", "gap_paired_se")]  # None: older runs
    for seed, full, static_exit, dyfip, margin, gap, margin_se, gap_se in zip(
            summary["seeds"], *columns, *paired):
        lines.append(f"{seed:>4} {100 * full:7.2f} {100 * static_exit:11.2f} {100 * dyfip:7.2f} "
                     f"{100 * margin:+7.2f} {_se(margin_se)} {100 * gap:6.2f} {_se(gap_se)}")
    lines.append(f"{'method':12s} {'accuracy':>17s} {'cycles avg':>11s} {'cycles worst':>13s}")
    for m in METHODS:
        a, ca, cw = (summary[m][f] for f in ("accuracy", "cycles_avg_ratio",
                                              "cycles_worst_ratio"))
        lines.append(f"{m:12s} {a['mean']:.4f} +- {a['se']:.4f} {ca['mean']:11.3f} "
                     f"{cw['mean']:13.3f}")
    g, d = summary["margin_vs_static_exit"], summary["gap_to_full"]
    lines.append(f"DyFiP - static_exit: {_points(g, True)} points; full - DyFiP: {_points(d)} "
                 "points")
    if "pooled_vs_static_exit" in summary:
        lines.append(_pooled_line(summary, "test"))
    if v := summary.get("validation"):
        lines.append(f"validation splits: DyFiP - static_exit {_points(v['margin'], True)} "
                     f"(per seed {' / '.join(f'{100 * m:+.2f}' for m in v['margin']['values'])}"
                     f"); full - DyFiP {_points(v['gap'])} points")
        if "pooled_vs_static_exit" in v:
            lines.append(_pooled_line(v, "validation"))
    if "targets" in summary:
        lines.append("targets held per seed: " + ", ".join(
            f"{name} {_held(t)}" for name, t in summary["targets"].items()))
    if "recovered" in summary:
        r = summary["recovered"]
        lines.append("share of the errors the static mask adds within the sets that DyFiP "
                     f"avoids: {' / '.join(f'{v:.0%}' for v in r['values'])} "
                     f"(mean {r['mean']:.0%})")
    return "\n".join(lines)


def plot_runs(summary: dict, path: Path) -> None:
    """Per run, DyFiP's margin over static + exit and its gap to the full network with their
    paired standard errors (where the report has them), the pooled figure as a band."""
    from .plots import pyplot, save_figure

    runs = np.arange(len(summary["seeds"]))
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.6))
    # (per-run values, their paired s.e., pooled figure, sign of its margin, target, title)
    panels = (("margin_vs_static_exit", "margin_paired_se", "pooled_vs_static_exit", 1,
               "dyfip_minus_static_exit", "DyFiP - static + exit"),
              ("gap_to_full", "gap_paired_se", "pooled_vs_full", -1, "full_minus_dyfip",
               "full - DyFiP"))
    bars = {t.name: t.bar for t in TARGETS.get(summary["dataset"], ())}
    for ax, (field, se_field, pooled_field, sign, target, title) in zip(axes, panels):
        se = [0.0 if s is None else 100 * s for s in summary[se_field]]
        ax.errorbar(runs, 100 * np.asarray(summary[field]["values"]), yerr=se, fmt="o",
                    capsize=3, color="tab:red")
        ax.axhline(0.0, color="k", lw=0.8)
        if target in bars:
            ax.axhline(100 * bars[target], color="tab:blue", ls="--", lw=1,
                       label=f"target {100 * bars[target]:+.2f}")
        if pooled_field in summary:
            pooled_figure = summary[pooled_field]
            mid, half = sign * 100 * pooled_figure["margin"], 100 * pooled_figure["paired_se"]
            ax.axhspan(mid - half, mid + half, color="tab:red", alpha=0.15,
                       label=f"pooled {mid:+.2f} +- {half:.2f}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.set_xticks(runs, [str(s) for s in summary["seeds"]])
        ax.set(title=f"{title} (points)", xlabel="seed")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{summary['dataset']}: {len(runs)} runs, +- paired standard error")
    fig.tight_layout()
    save_figure(fig, path)


def main(reports: list[Path], out: Path | None) -> dict:
    """Print the summary; with ``out``, write it there as JSON and its plot next to it."""
    summary = aggregate(reports)
    if out is not None:
        write_json(out, summary)
        plot_runs(summary, out.with_suffix(".png"))
    print(format_summary(summary))
    return summary
