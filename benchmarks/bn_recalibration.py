"""Full-network test accuracy of trained bundles before and after BatchNorm re-estimation.

    python benchmarks/bn_recalibration.py build/bench build/bench-seed1 [--out FILE.json]

Loads each bundle's base.pt (the QAT network, before any pruning), re-estimates its
BatchNorm statistics on the training split (``dyfip.train.recalibrate_batchnorm``,
what training does at its end unless ``--set recalibrate_bn=false``) and prints both
accuracies: for bundles trained without it, or to check that a re-estimated one is stable.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from dyfip.bundle import write_json
from dyfip.data import load_dataset
from dyfip.model import load_checkpoint
from dyfip.train import accuracy, recalibrate_batchnorm


def measure(bundle: Path) -> dict:
    model = load_checkpoint(bundle / "base.pt")
    data = load_dataset(model.config.dataset, model.config.data_dir)
    before = accuracy(model, data.test)
    recalibrate_batchnorm(model, data.train)
    return {"bundle": str(bundle), "seed": model.config.seed, "test_before": before,
            "test_after": accuracy(model, data.test)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="+", type=Path)
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args()
    rows = []
    for bundle in args.bundles:
        rows.append(measure(bundle))
        r = rows[-1]
        print(f"{bundle} (seed {r['seed']}): full network {r['test_before']:.2%} -> "
              f"{r['test_after']:.2%} after BatchNorm re-estimation", flush=True)
    if args.out:
        write_json(args.out, {"runs": rows})


if __name__ == "__main__":
    main()
