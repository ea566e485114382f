"""``dyfip``: one command per step, all writing into one bundle folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import IMPORTANCE_MODES, XAI_METHODS, parse_budget

STEP_COMMANDS = {"train": ("train",), "explain": ("explain",), "fold": ("fold",),
                 "finetune": ("finetune",), "evaluate": ("evaluate",),
                 "run": ("train", "explain", "fold", "finetune", "evaluate", "build")}
STEP_HELP = {
    "train": "Brevitas QAT of the backbone and the coarse branch (base.pt)",
    "explain": "Captum per-class filter importance of stage B (importance.npz, .png)",
    "fold": "FINN folding for --board: mask groups = PE, filter permutation (folding.json)",
    "finetune": "mask tables for every candidate set + same-effort fine-tunes of stage B",
    "evaluate": "full / early exit / static / static+exit / DyFiP on the test split (report)",
    "run": " -> ".join(STEP_COMMANDS["run"])}


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("build/demo"), help="bundle folder")
    p.add_argument("--dataset", choices=["digits", "fashion-mnist", "cifar10"])
    p.add_argument("--data-dir", dest="data_dir", help="folder with the data set's files")
    p.add_argument("--seed", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--finetune-epochs", dest="finetune_epochs", type=int)
    p.add_argument("--k", type=int)
    p.add_argument("--tau", type=float)
    p.add_argument("--budget", type=parse_budget,
                   help="kept fraction of filters: one for every stage-B layer, or one per "
                   "layer comma-separated (e.g. 0.25,0.3125,0.3125)")
    p.add_argument("--group-size", dest="group_size", type=int,
                   help="mask granularity in filters (default 0: the PE of the folding)")
    p.add_argument("--board", help="board whose FINN folding sets cycles and mask groups "
                   "(Pynq-Z2, KV260, ZCU104; 'none': default folding, no FINN)")
    p.add_argument("--no-permute", dest="permute", action="store_const", const=False)
    p.add_argument("--xai-method", dest="xai_method", choices=XAI_METHODS)
    p.add_argument("--importance-mode", dest="importance_mode", choices=IMPORTANCE_MODES)
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                   help="any config field (see config.json), e.g. --set flip=false; repeatable")
    p.add_argument("--no-sweep", action="store_true", help="evaluate only the main point")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test sizes (few epochs, one sweep point): seconds, not minutes")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dyfip", description=__doc__)
    ap.add_argument("--version", action="version", version=f"dyfip {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in STEP_HELP.items():
        _add_pipeline_args(sub.add_parser(name, help=text, description=text))
    b = sub.add_parser("build", help="FINN accelerator: estimates or bitstream")
    b.add_argument("--bundle", type=Path, default=Path("build/demo"))
    b.add_argument("--board", help="board file name or path (default: the bundle's board)")
    what = b.add_mutually_exclusive_group()
    what.add_argument("--estimate", action="store_true",
                      help="dataflow build, estimates and accelerator export (the default)")
    what.add_argument("--bitstream", action="store_true",
                      help="then FINN's hardware steps to the overlay bitstream (needs Vivado)")
    b.add_argument("--ignore-fit", action="store_true",
                   help="run the bitstream steps even if the estimate exceeds the board")
    g = sub.add_parser("aggregate", help="mean +- s.e. over several runs' report.json "
                       "(the files or their bundle folders)")
    g.add_argument("reports", type=Path, nargs="+")
    g.add_argument("--out", type=Path, help="write the summary JSON here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "build":
            from dyfip_hw.build import main as build_main

            from .pipeline import bundle_board
            build_main(args.bundle, args.board or bundle_board(args.bundle),
                       bitstream=args.bitstream, ignore_fit=args.ignore_fit)
            return 0
        if args.command == "aggregate":
            from .aggregate import main as aggregate_main
            aggregate_main(args.reports, args.out)
            return 0
        from .pipeline import Pipeline, load_config

        from .config import parse_setting

        overrides = {k: v for k, v in vars(args).items()
                     if k not in ("command", "out", "no_sweep", "quick", "settings")}
        overrides.update(parse_setting(s) for s in args.settings)
        config = load_config(args.out, overrides, fresh=args.command in ("run", "train"),
                             quick=args.quick)
        if args.no_sweep:
            config = config.replace(sweep_tau=(), sweep_k=(), sweep_budget=())
        Pipeline(config, args.out).run(STEP_COMMANDS[args.command])
        if "evaluate" in STEP_COMMANDS[args.command]:
            from .bundle import read_json
            from .report import summary
            print(summary(read_json(args.out / "report.json")))
            print(f"report: {args.out / 'report.md'}")
        return 0
    except (OSError, ValueError, RuntimeError) as exc:  # OSError: missing file, disk full
        print(f"dyfip {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
