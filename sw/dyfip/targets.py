"""The benchmark's accuracy and cost targets per data set, checked on one run's figures.

Each target is a bar on one figure of ``report.json`` (accuracies as fractions, costs as
ratios to the full network of the same run). The targets hold per seed, so every run is
checked on its own; ``dyfip aggregate`` counts the runs that hold each. Wall-clock bars
(``make demo`` / ``make bench`` time) are measured by the commands, not here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

TOLERANCE = 1e-9  # float noise of accuracy differences (e.g. 30 / 10000 images)


@dataclass(frozen=True)
class Target:
    """``figure(report) <= bar`` (``at_most``) or ``>= bar``; ``unit`` formats both:
    "%" an accuracy, "pt" a difference of accuracies, "x" a ratio to the full network."""

    name: str
    figure: Callable[[dict], float]
    bar: float
    at_most: bool
    unit: str

    def check(self, report: dict) -> dict:
        value = float(self.figure(report))
        holds = (value <= self.bar + TOLERANCE if self.at_most
                 else value >= self.bar - TOLERANCE)
        return {"value": value, "bar": self.bar, "at_most": self.at_most, "unit": self.unit,
                "holds": holds}


def format_figure(value: float, unit: str) -> str:
    return {"%": f"{100 * value:.2f}%", "pt": f"{100 * value:+.2f} pt",
            "x": f"{value:.3f}x"}[unit]


def describe(name: str, check: dict) -> str:
    """E.g. ``full_minus_dyfip +0.28 pt (<= +0.50 pt) holds``."""
    value, bar = (format_figure(check[f], check["unit"]) for f in ("value", "bar"))
    return (f"{name} {value} ({'<=' if check['at_most'] else '>='} {bar}) "
            f"{'holds' if check['holds'] else 'MISSED'}")


def _full(r: dict) -> float:
    return r["full"]["accuracy"]


def _gap(r: dict) -> float:
    return r["full"]["accuracy"] - r["dyfip"]["accuracy"]


def _margin(r: dict) -> float:
    return r["margin_vs_static_exit"]  # the report's own figure (DyFiP - static + exit)


def _macs_avg(r: dict) -> float:
    return r["dyfip"]["macs_avg_ratio"]


def _macs_worst(r: dict) -> float:
    return r["dyfip"]["macs_worst_ratio"]


def _targets(full: float, gap: float, margin: float, macs_avg: float,
             macs_worst: float) -> tuple[Target, ...]:
    return (Target("full_accuracy", _full, full, at_most=False, unit="%"),
            Target("full_minus_dyfip", _gap, gap, at_most=True, unit="pt"),
            Target("dyfip_minus_static_exit", _margin, margin, at_most=False, unit="pt"),
            Target("dyfip_macs_avg", _macs_avg, macs_avg, at_most=True, unit="x"),
            Target("dyfip_macs_worst", _macs_worst, macs_worst, at_most=True, unit="x"))


TARGETS: dict[str, tuple[Target, ...]] = {
    "digits": _targets(full=0.97, gap=0.005, margin=0.0, macs_avg=0.35, macs_worst=0.40),
    "fashion-mnist": _targets(full=0.925, gap=0.01, margin=0.003, macs_avg=0.15,
                              macs_worst=0.25),
}


def check_targets(report: dict) -> dict[str, dict]:
    """Every target of the report's data set with its value and whether it holds (none for
    data sets without targets, e.g. cifar10)."""
    return {t.name: t.check(report) for t in TARGETS.get(report["params"]["dataset"], ())}
