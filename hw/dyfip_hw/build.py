"""``dyfip build``: export, FINN dataflow build, estimates and (with Vivado) bitstreams.

Writes into the bundle:

- ``accel/stage_a.onnx``, ``accel/stage_b.onnx``: QONNX exports (integer inputs);
- ``accel/stage_a_dataflow.onnx``, ``accel/stage_b_dataflow.onnx``: folded, specialised
  FINN dataflow graphs (stage B with MaskedMVAU + MaskSplit and the ``mask`` input);
- ``accel/layers.json`` + ``accel/stage_a.npz`` + ``accel/stage_b.npz``: the numpy
  description executed by :mod:`dyfip.dataflow` (simulated board);
- ``estimates.json``: per layer PE/SIMD, cycles, LUT/BRAM/URAM/DSP; per stage totals;
- with ``bitstream``: ``accel/dyfip.bit``, ``accel/dyfip.hwh``, ``accel/driver.json``:
  one overlay of both stages (:mod:`dyfip_hw.overlay`), what the host driver loads.
Intermediates go to ``hw_build/`` (not needed on the board). ``accel/`` files and
``estimates.json`` are staged in ``hw_build/`` and moved into place only when every check
passed, so a failed build leaves the previous ones.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from dyfip.bundle import (CHECKPOINT, FOLDING, REPORT_JSON, atomic_write_with, json_field,
                          read_json, write_json, write_npz)
from dyfip.dataflow import FORMAT_VERSION, LAYERS_JSON, Accelerator
from dyfip.evaluate import METHODS as REPORT_METHODS
from dyfip.model import model_hash
from dyfip.tables import Budget

from .boards import RESOURCES, Board, load_board
from .builder import BITSTREAM_STEPS, ESTIMATE_STEPS, BuildConfig, StageSpec, build_stage
from .describe import check_mask_input, describe_stage, summarize
from .export import export_stages, stage_info
from .finn_env import SUPPORTED_VIVADO, missing_tools
from .transforms import check_folding_keys, folding_targets

ACCEL = "accel"
ESTIMATES = "estimates.json"
WORK = "hw_build"
PATH_FIGURES = ("cycles_avg", "cycles_worst", "cycles_avg_ratio", "cycles_worst_ratio")


def layer_names(model) -> dict[str, list[str]]:
    """Matrix-vector layer names per stage, in graph order."""
    head = [f"head.{j}" for j in range(len(model.config.head_hidden))] + ["classifier"]
    return {"stage_a": [f"stage_a.{i}" for i in range(len(model.stage_a))],
            "stage_b": [f"stage_b.{i}" for i in range(len(model.stage_b))] + head}


def stage_specs(model, paths: dict[str, Path]) -> list[StageSpec]:
    names = layer_names(model)
    return [StageSpec("stage_a", paths["stage_a"], "UINT8", tuple(names["stage_a"])),
            StageSpec("stage_b", paths["stage_b"], f"UINT{model.config.act_bits}",
                      tuple(names["stage_b"]), tuple(model.prunable_layers))]


def build_accelerators(model, out_dir: str | Path, board: Board | str,
                       steps: list[str] | None = None, mask_keep: Budget | None = None,
                       work_dir: str | Path | None = None) -> tuple[dict, BuildConfig]:
    """Export and build both stages into ``out_dir``; returns ({stage: model}, config).

    ``mask_keep`` (default: the model's table budget) steers the filter-enable folding; the
    model's ``mask_pe_max`` caps its PE (the mask groups the tables were built for), its
    cycle targets replace the board's (:func:`with_targets`).
    Intermediates go to ``work_dir`` (default ``out_dir/hw_build``)."""
    board = with_targets(load_board(board) if isinstance(board, str) else board, model.config)
    out_dir = Path(out_dir)
    paths = export_stages(model, out_dir / ACCEL)
    cfg = BuildConfig(board=board, out_dir=out_dir / WORK if work_dir is None else Path(work_dir),
                      steps=list(steps or ESTIMATE_STEPS),
                      mask_keep=model.config.budget if mask_keep is None else mask_keep,
                      mask_pe_max=model.config.mask_pe_max)
    specs = stage_specs(model, paths)
    graphs = {spec.name: build_stage(spec, cfg) for spec in specs}
    check_board_folding_keys(board, graphs, specs)
    return graphs, cfg


def with_targets(board: Board, config) -> Board:
    """``board`` with the config's cycle targets where set (> 0): ``mask_target_cycles`` for
    the filter-enable layers, ``fixed_target_cycles`` for the others; each layer kind keeps
    the board file's target otherwise."""
    return dataclasses.replace(
        board, target_cycles_per_frame=config.mask_target_cycles or board.target_cycles_per_frame,
        fixed_target_cycles=config.fixed_target_cycles or board.fixed_target)


def check_board_folding_keys(board: Board, graphs: dict, specs: list[StageSpec]) -> None:
    """Every key of the board's ``folding`` names a layer or node of one of the stages."""
    targets = set().union(*(folding_targets(graphs[s.name], list(s.layer_names))
                            for s in specs))
    names = [n for s in specs for n in s.layer_names]
    check_folding_keys(board.folding, targets, names, board.path or board.name)


def export_accelerator(model, graphs: dict, accel_dir: str | Path, board: Board) -> dict:
    """Write layers.json + per-stage npz + dataflow onnx; returns the description."""
    accel_dir = Path(accel_dir)
    names, info = layer_names(model), stage_info(model)
    stages = {}
    for name, graph in graphs.items():
        if name == "stage_b":
            check_mask_input(graph)
        spec, params = describe_stage(graph, name, names[name], board.part)
        spec["params"] = f"{name}.npz"
        write_npz(accel_dir / spec["params"], **params)
        atomic_write_with(accel_dir / f"{name}_dataflow.onnx", lambda tmp, g=graph: g.save(tmp))
        stages[name] = spec
    description = {
        "version": FORMAT_VERSION, "board": board.name, "part": board.part,
        "model_hash": model_hash(model),
        "feature_scale": info.feature_scale, "feature_bits": info.feature_bits,
        "logit_scale": info.logit_scale, "input_scale": info.in_scale_a,
        "prunable_layers": list(model.prunable_layers),
        "filters_per_layer": list(model.filters_per_layer), "stages": stages}
    write_json(accel_dir / LAYERS_JSON, description)
    return description


def estimates_from(description: dict, board: Board, cfg: BuildConfig, seconds: float) -> dict:
    stages = {name: {**summarize(spec), "layers": [
        {k: v for k, v in la.items() if k not in ("inputs", "outputs")} for la in spec["layers"]]}
        for name, spec in description["stages"].items()}
    masked = [la for la in stages["stage_b"]["layers"] if la["op"] == "MaskedMVAU"]
    total = {k: round(sum(s["resources"][k] for s in stages.values()), 1)
             for k in RESOURCES}
    return {
        "board": board.name, "part": board.part, "clk_ns": board.clk_ns,
        "fmax_mhz": board.fmax_mhz, "target_cycles_per_frame": cfg.board.target_cycles_per_frame,
        "fixed_target_cycles": cfg.board.fixed_target,
        "prunable_layers": description["prunable_layers"],
        "filters_per_layer": description["filters_per_layer"],
        "group_size": {la["layer"]: la["PE"] for la in masked},
        "total_latency_cycles": sum(s["latency_cycles"] for s in stages.values()),
        "resources_total": total, "resources_available": board.resources,
        "fits": not overfull(total, board.resources),
        "cycle_model": "dyfip.kernels.masked_mvau_cycles per MaskedMVAU, FINN get_exp_cycles "
                       "otherwise; dyfip.dataflow.stage_cycles(estimates['stages'][s], masks)",
        "stages": stages, "build_seconds": round(seconds, 2), "steps": cfg.log}


def self_check(accel_dir: Path, graphs: dict, n: int = 4, seed: int = 0) -> int:
    """FINN's Python execution == the numpy interpreter on random integer inputs and masks."""
    from qonnx.core.onnx_exec import execute_onnx

    from .transforms import MASK_NAME, ToGenericOps

    acc = Accelerator(accel_dir)
    rng = np.random.default_rng(seed)
    ga, gb = (graphs[s].transform(ToGenericOps()) for s in ("stage_a", "stage_b"))
    a_in = acc.stages["stage_a"].inputs[0]
    pixels = rng.integers(0, 256, (n, *a_in["shape"][1:]))
    masks = rng.integers(0, 2, (n, acc.mask_length))
    feats, logits = acc.stage_a(pixels), acc.stage_b(acc.stage_a(pixels), masks)
    b_data = next(i.name for i in gb.graph.input if i.name != MASK_NAME)
    for i in range(n):
        fa = execute_onnx(ga, {ga.graph.input[0].name: pixels[i:i + 1].astype(np.float32)}
                          )[ga.graph.output[0].name]
        lb = execute_onnx(gb, {b_data: fa, MASK_NAME: masks[i:i + 1].astype(np.float32)}
                          )[gb.graph.output[0].name]
        if not (np.array_equal(fa, feats[i:i + 1]) and np.array_equal(lb, logits[i:i + 1])):
            raise RuntimeError(f"accelerator export check failed on random image {i}: the "
                               "numpy interpreter differs from FINN's execution")
    return n


def estimate_accelerators(model, out_dir: str | Path, board: Board | str,
                          t0: float | None = None, mask_keep: Budget | None = None,
                          work_dir: str | Path | None = None
                          ) -> tuple[dict, dict, BuildConfig]:
    """Build, export (``out_dir/accel``), self-check and estimate; no bitstream steps.

    Returns (estimates, {stage: folded graph}, build config). The folding depends only on
    the network's shapes, so the estimates of an untuned model hold for its fine-tunes.
    Intermediates go to ``work_dir`` (default ``out_dir/hw_build``).
    """
    t0 = time.perf_counter() if t0 is None else t0
    board_cfg = load_board(board) if isinstance(board, str) else board
    graphs, cfg = build_accelerators(model, out_dir, board_cfg, mask_keep=mask_keep,
                                     work_dir=work_dir)
    description = export_accelerator(model, graphs, Path(out_dir) / ACCEL, board_cfg)
    self_check(Path(out_dir) / ACCEL, graphs)
    return estimates_from(description, board_cfg, cfg, time.perf_counter() - t0), graphs, cfg


class DoesNotFit(ValueError):
    """The estimated accelerators need more of a resource than the board has."""


def overfull(total: dict, available: dict) -> list[str]:
    """The resources an estimate's ``resources_total`` needs more of than are ``available``."""
    return [k for k, n in available.items() if total[k] > n]


def shortfall(est: dict) -> str:
    """The resources an estimate needs more of than its board has, e.g. 'LUT 77361 > 53200'."""
    total, available = est["resources_total"], est["resources_available"]
    return ", ".join(f"{k} {total[k]:.0f} > {available[k]}" for k in overfull(total, available))


def doublings(start: int, stop: int) -> Iterator[int]:
    """start, 2 start, 4 start ... up to ``stop``."""
    while start <= stop:
        yield start
        start *= 2


def fitting_targets(model, board: Board, est: dict, work_dir: Path, max_target: int = 1 << 18
                    ) -> tuple[dict[str, int], dict] | None:
    """The cycle-target settings of a slower folding whose estimate fits the board, with its
    resources; None if none with targets up to ``max_target`` does.

    First the smallest doubling of the unmasked layers' target (the masked layers' folding,
    hence the mask groups and tables, stays); else the smallest doubling of the filter-enable
    layers' target with which one does (new mask groups), with the smallest such unmasked
    target. ``model`` is not changed."""
    probe, now = copy.copy(model), (est["target_cycles_per_frame"], est["fixed_target_cycles"])

    def fitting(targets: tuple[int, int]) -> dict | None:
        probe.config = model.config.replace(mask_target_cycles=targets[0],
                                            fixed_target_cycles=targets[1])
        with staging(work_dir) as tmp:
            trial, _, _ = estimate_accelerators(probe, tmp, board, work_dir=tmp / WORK)
        return trial["resources_total"] if trial["fits"] else None

    def settings(targets: tuple[int, int]) -> dict[str, int]:  # the changed ones
        names = ("mask_target_cycles", "fixed_target_cycles")
        return {n: t for n, t, was in zip(names, targets, now) if t != was}

    print(f"searching a slower folding that fits {board.name} ...")
    for mask in doublings(now[0], max(max_target, now[0])):
        slowest = (mask, max(max_target, now[1]))
        top = None if slowest == now else fitting(slowest)
        if not top:
            continue
        for fixed in doublings(now[1], slowest[1] - 1):  # faster unmasked targets first
            resources = None if (mask, fixed) == now else fitting((mask, fixed))
            if resources:
                return settings((mask, fixed)), resources
        return settings(slowest), top
    return None


def check_fits(est: dict, board: Board,
               suggest: Callable[[], tuple[dict[str, int], dict] | None] | None = None,
               largest: int = 3) -> None:
    """Refuse FINN's hardware steps (hours of Vivado that end in a placement error) for
    accelerators whose estimate exceeds the board, naming the resources, the largest layers
    and, from ``suggest()`` (see :func:`fitting_targets`), cycle targets that fit."""
    over = overfull(est["resources_total"], board.resources)
    if not over:
        return
    layers = sorted(((la["resources"][over[0]], f"{stage}/{la['name']}")
                     for stage, s in est["stages"].items() for la in s["layers"]), reverse=True)
    biggest = ", ".join(f"{name} {amount:.0f}" for amount, name in layers[:largest])
    found = suggest() if suggest is not None else None
    raise DoesNotFit(
        f"the accelerators do not fit {board.name} by FINN's estimate ({shortfall(est)}; "
        f"largest {over[0]}: {biggest}), so Vivado's placement would fail; "
        f"{slower_folding(found, over)}"
        ". Otherwise build for a board with more room (--board, then 'dyfip fold' for it "
        "first), or pass --ignore-fit (make bitstream IGNORE_FIT=1) if the estimate is known "
        "to be pessimistic")


def slower_folding(found: tuple[dict[str, int], dict] | None, over: list[str]) -> str:
    """What :func:`check_fits` says of :func:`fitting_targets`' answer."""
    if found is None:
        return "no slower folding fits"
    settings, resources = found
    slower = " and ".join(layers for key, layers in (
        ("mask_target_cycles", "the filter-enable layers"),
        ("fixed_target_cycles", "the layers without filter enables")) if key in settings)
    slower += " folded slower"
    if "mask_target_cycles" in settings:
        slower += ", so the mask groups may change"
    return (f"with '{' '.join(f'--set {k}={v}' for k, v in settings.items())}' ({slower}; "
            f"{', '.join(f'{k} {resources[k]:.0f}' for k in over)}) it fits: "
            "'dyfip fold', 'finetune', 'evaluate' with it, then build again")


def main(bundle_dir: str | Path, board: str = "Pynq-Z2", bitstream: bool = False,
         ignore_fit: bool = False) -> dict:
    """Build the accelerators of a bundle; returns the estimates dict (also estimates.json).

    ``bitstream`` continues with FINN's hardware steps, unless the estimate exceeds the
    board (:class:`DoesNotFit`, ``ignore_fit`` overrides); without Vivado / Vitis HLS it stops
    with :class:`dyfip_hw.finn_env.ToolMissing` naming the tool and step, after writing
    everything the estimate flow produces.
    """
    from dyfip.model import load_checkpoint

    t0 = time.perf_counter()
    bundle = Path(bundle_dir)
    board_cfg = load_board(board)
    if not (bundle / CHECKPOINT).exists():
        raise FileNotFoundError(f"{bundle / CHECKPOINT} not found: run 'dyfip run' first")
    model = load_checkpoint(bundle / CHECKPOINT)
    folded = read_folding(bundle)
    check_folding(bundle, folded, board_cfg.name)  # before anything is built
    paths = report_paths(bundle)  # the decision paths' cycles under this folding
    with staging(bundle / WORK) as staged:
        est, graphs, cfg = estimate_accelerators(model, staged, board_cfg, t0,
                                                 work_dir=bundle / WORK)
        check_folding(bundle, folded, board_cfg.name, est["group_size"])
        if paths is not None:
            est["paths"] = paths
        est["bitstream"] = {"requested": bitstream, "vivado": list(SUPPORTED_VIVADO),
                            "missing_tools": missing_tools()}
        write_json(staged / ESTIMATES, est)
        publish(staged, bundle)
    print(summary(est, bundle))
    if bitstream:
        if not ignore_fit:
            check_fits(est, board_cfg, lambda: fitting_targets(model, board_cfg, est,
                                                               bundle / WORK))
        run_bitstream(model, graphs, cfg, bundle)
    return est


@contextlib.contextmanager
def staging(parent: Path) -> Iterator[Path]:
    """A new temporary folder in ``parent`` (the bundle's file system, so publishing is
    renames), removed on exit."""
    parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix="staged-", dir=parent))
    try:
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def publish(staged: Path, bundle: Path) -> None:
    """Move the staged ``accel/`` files, then ``estimates.json``, into ``bundle``; other
    files of its ``accel/`` (bitstream outputs) stay."""
    accel = bundle / ACCEL
    accel.mkdir(exist_ok=True)
    for path in sorted((staged / ACCEL).iterdir()):
        os.replace(path, accel / path.name)
    os.replace(staged / ESTIMATES, bundle / ESTIMATES)


def read_optional(bundle: Path, name: str, step: str) -> tuple[Path, Any, str] | None:
    """(path, JSON content, hint) of the bundle file ``name`` that ``dyfip step`` writes;
    None without one."""
    path, hint = bundle / name, f"run 'dyfip {step} --out {bundle}'"
    return (path, read_json(path, hint), hint) if path.exists() else None


def read_folding(bundle: Path) -> dict | None:
    """The bundle's ``folding.json`` (board and mask groups), None without one."""
    if (found := read_optional(bundle, FOLDING, "fold")) is None:
        return None
    path, folded, hint = found
    for key, kind in (("board", str), ("group_size", dict)):
        json_field(folded, key, path, kind, hint)
    return folded


def report_paths(bundle: Path) -> dict | None:
    """Cycles of every method's decision path from ``report.json``, None without one."""
    if (found := read_optional(bundle, REPORT_JSON, "evaluate")) is None:
        return None
    path, report, hint = found
    return {m: {f: json_field(report, f"{m}.{f}", path, float, hint) for f in PATH_FIGURES}
            for m in REPORT_METHODS}


def check_folding(bundle: Path, folded: dict | None, board: str,
                  group_size: dict | None = None) -> None:
    """The build is for the board (and has the mask groups, PE) of the bundle's
    ``folding.json``, which its tables, fine-tunes and reported cycles were made for."""
    if folded is None:
        return
    if folded["board"] != board or group_size not in (None, folded["group_size"]):
        built = "" if group_size is None else f" (mask groups {group_size})"
        raise ValueError(
            f"the bundle's tables and report were made for the {folded['board']} folding "
            f"(mask groups {folded['group_size']}), not this {board} build{built}: build for "
            f"{folded['board']}, or run 'dyfip fold --board {board} --out {bundle}', then "
            "'dyfip finetune' and 'dyfip evaluate' first")


def summary(est: dict, bundle: Path) -> str:
    """A few lines for the console."""
    lines = [f"accelerators for {est['board']} ({est['part']}, {est['fmax_mhz']:.0f} MHz) in "
             f"{est['build_seconds']:.1f} s -> {bundle / ESTIMATES}"]
    for name, s in est["stages"].items():
        r = s["resources"]
        lines.append(f"  {name}: {s['latency_cycles']} cycles latency, {s['bottleneck_cycles']} "
                     f"bottleneck, efficiency {s['efficiency']}, LUT {r['LUT']:.0f} "
                     f"BRAM18 {r['BRAM_18K']:.0f} DSP {r['DSP']:.0f}")
    lines.append(f"  mask groups (PE) {est['group_size']}; fits {est['board']}: {est['fits']}")
    return "\n".join(lines)


def run_bitstream(model, graphs: dict, cfg: BuildConfig, bundle: Path) -> Path:
    """FINN's hardware steps on one overlay of both stages (:mod:`.overlay`), then its
    bitstream and ``driver.json`` into ``accel/``; without Vivado / Vitis HLS the flow stops
    at the first step that needs them, after code generation."""
    from finn.util.basic import get_driver_shapes

    from .builder import STEPS
    from .overlay import OVERLAY, merge_stages, write_overlay

    overlay = merge_stages(graphs)
    spec = StageSpec(OVERLAY, cfg.out_dir / OVERLAY / f"{OVERLAY}.onnx", "UINT8", ())
    spec.onnx.parent.mkdir(parents=True, exist_ok=True)
    overlay.save(str(spec.onnx))
    for step_name in BITSTREAM_STEPS:
        overlay = STEPS[step_name](overlay, spec, cfg)
        cfg.log.append({"stage": OVERLAY, "step": step_name})
    return write_overlay(cfg.out_dir / OVERLAY / "finn", bundle / ACCEL,
                         get_driver_shapes(overlay), model_hash(model), cfg.board.clk_ns)
