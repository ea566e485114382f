"""FINN flow of both stages: export exactness, build, estimates, bit-exact masked execution."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.finn


@pytest.fixture(scope="session")
def hw_bundle() -> Path:
    """A bundle with only a calibrated model.pt, built once per session (estimate flow)."""
    from dyfip_hw.testing import calibrated_bundle

    return Path(calibrated_bundle())


@pytest.fixture(scope="session")
def hw_model(hw_bundle):
    from dyfip.model import load_checkpoint

    return load_checkpoint(hw_bundle / "model.pt")


def _masks(model, n: int, kind: str, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for f in model.filters_per_layer:
        if kind == "all":
            m = np.ones((n, f), np.uint8)
        elif kind == "none":
            m = np.zeros((n, f), np.uint8)
        elif kind == "one":  # most restrictive non-empty: one filter per layer
            m = np.zeros((n, f), np.uint8)
            m[np.arange(n), rng.integers(0, f, n)] = 1
        else:
            m = (rng.random((n, f)) < 0.3).astype(np.uint8)
        out.append(m)
    return out


def test_qonnx_export_matches_pytorch(hw_model, digits, tmp_path):
    """QONNX execution of both exported stages == PyTorch, bit-exact on the integers."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    from dyfip_hw.export import export_stages, reference_integers, stage_info

    paths = export_stages(hw_model, tmp_path)
    qa, qb = (cleanup_model(ModelWrapper(str(paths[s]))) for s in ("stage_a", "stage_b"))
    info = stage_info(hw_model)
    images = digits.test.images[:24]
    f_ref, l_ref = reference_integers(hw_model, images)
    for i in range(len(images)):
        fa = execute_onnx(qa, {qa.graph.input[0].name: images[i:i + 1].astype(np.float32)}
                          )[qa.graph.output[0].name]
        f_int = fa / info.feature_scale
        assert np.array_equal(np.rint(f_int), f_ref[i:i + 1])
        assert np.abs(f_int - np.rint(f_int)).max() < 1e-3
        lb = execute_onnx(qb, {qb.graph.input[0].name: f_ref[i:i + 1].astype(np.float32)}
                          )[qb.graph.output[0].name]
        assert np.array_equal(np.rint(lb / info.logit_scale), l_ref[i:i + 1])


def test_build_writes_estimates(hw_bundle, hw_model):
    from dyfip_hw.testing import built_bundle

    est = built_bundle(str(hw_bundle))
    assert est["_wall_seconds"] < 60
    saved = json.loads((hw_bundle / "estimates.json").read_text())
    assert saved["part"] == "xc7z020clg400-1"
    b = saved["stages"]["stage_b"]
    masked = [la for la in b["layers"] if la["op"] == "MaskedMVAU"]
    assert [la["layer"] for la in masked] == hw_model.prunable_layers
    for la in masked:
        assert la["MH"] % la["PE"] == 0 and (la["MW"] // la["KK"]) % la["SIMD"] == 0
        assert la["cycles"] == la["pixels"] * (la["MH"] // la["PE"]) * (la["MW"] // la["SIMD"])
        assert la["resources"]["LUT"] > 0
    assert saved["group_size"] == {la["layer"]: la["PE"] for la in masked}
    for stage in saved["stages"].values():
        assert stage["latency_cycles"] >= stage["bottleneck_cycles"] > 0
        assert 0 < stage["efficiency"] <= 1
    for name in ("layers.json", "stage_a.npz", "stage_b.npz", "stage_a_dataflow.onnx",
                 "stage_b_dataflow.onnx", "stage_a.onnx", "stage_b.onnx"):
        assert (hw_bundle / "accel" / name).exists()


def test_masked_folding_minimises_the_pruned_path(hw_bundle, hw_model):
    """Each MaskedMVAU's (PE, SIMD) has the fewest pruned-path cycles (layer at the table
    budget + its window feeders) among the foldings with as few multipliers."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from dyfip_hw.boards import load_board
    from dyfip_hw.transforms import (base_op_type, divisors, expected_masked_cycles,
                                     feeder_cycles, feeders)

    g = ModelWrapper(str(hw_bundle / "accel" / "stage_b_dataflow.onnx"))
    target = load_board("Pynq-Z2").target_cycles_per_frame
    keep, input_keep = hw_model.config.budget, None
    for node in (n for n in g.graph.node if base_op_type(n) == "MaskedMVAU"):
        inst = getCustomOp(node)
        mh, ch, kk, px = (inst.get_nodeattr("MH"), inst.channels, inst.get_nodeattr("KK"),
                          inst.pixels())
        pe, simd = inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD")

        def cost(p, s):
            return (px * expected_masked_cycles(mh, ch, kk, p, s, keep, input_keep)
                    + feeder_cycles(g, node, s))
        rivals = [(p, s) for p in divisors(mh) for s in divisors(ch)
                  if p * s == pe * simd and px * (mh // p) * (kk * ch // s) <= target]
        assert (pe, simd) in rivals
        assert cost(pe, simd) == min(cost(p, s) for p, s in rivals)
        for prod in feeders(g, node):  # the window streams SIMD channels per cycle
            feeder = getCustomOp(prod)
            assert feeder.get_nodeattr("SIMD") == simd
            if "parallel_window" in feeder.get_nodeattr_types():
                assert feeder.get_nodeattr("parallel_window") == 0
        input_keep = keep


@pytest.mark.parametrize("max_pe, target", [(1, None), (2, 64)])
def test_pe_cap_gives_finer_mask_groups(hw_bundle, hw_model, max_pe, target):
    """``mask_pe_max`` caps PE (the mask groups); SIMD then takes the fewest multipliers that
    meet the target, or the fastest folding allowed when none does."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from dyfip_hw.boards import load_board
    from dyfip_hw.transforms import FoldMaskedLayers, base_op_type, divisors

    g = ModelWrapper(str(hw_bundle / "accel" / "stage_b_dataflow.onnx"))
    target = target or load_board("Pynq-Z2").target_cycles_per_frame
    g = g.transform(FoldMaskedLayers(target, hw_model.config.budget, max_pe=max_pe))
    for node in (n for n in g.graph.node if base_op_type(n) == "MaskedMVAU"):
        inst = getCustomOp(node)
        mh, ch, kk, px = (inst.get_nodeattr("MH"), inst.channels, inst.get_nodeattr("KK"),
                          inst.pixels())
        pe, simd = inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD")
        allowed = [(p, s) for p in divisors(mh) if p <= max_pe for s in divisors(ch)]
        meet = [p * s for p, s in allowed if px * (mh // p) * (kk * ch // s) <= target]
        assert pe <= max_pe
        assert pe * simd == (min(meet) if meet else max(p * s for p, s in allowed))


def test_board_folding_of_one_attribute_keeps_the_other_chosen(hw_bundle, hw_model):
    """A board entry giving a filter-enable layer only its SIMD still gets the PE that
    meets the target with that SIMD (it used to stay at 1: a slower layer, 1-filter masks)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from dyfip_hw.boards import load_board
    from dyfip_hw.transforms import FoldMaskedLayers, base_op_type

    target = load_board("Pynq-Z2").target_cycles_per_frame
    path = str(hw_bundle / "accel" / "stage_b_dataflow.onnx")
    free = ModelWrapper(path).transform(FoldMaskedLayers(target, hw_model.config.budget))
    node = next(n for n in free.graph.node if base_op_type(n) == "MaskedMVAU")
    name, want_pe, simd = (getCustomOp(node).get_nodeattr(a) for a in ("layerName", "PE", "SIMD"))
    assert want_pe > 1
    given = ModelWrapper(path)
    for n in given.graph.node:  # as exported: unfolded
        if base_op_type(n) == "MaskedMVAU":
            getCustomOp(n).set_nodeattr("PE", 1)
            getCustomOp(n).set_nodeattr("SIMD", 1)
    given = given.transform(FoldMaskedLayers(target, hw_model.config.budget,
                                             given={name: {"SIMD": simd}}))
    inst = getCustomOp(next(n for n in given.graph.node if n.name == node.name))
    assert (inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD")) == (want_pe, simd)


def test_model_config_caps_the_build(hw_model, tmp_path):
    """The model's ``mask_pe_max`` reaches the build, so accelerator and tables agree."""
    import copy

    from dyfip_hw.build import estimate_accelerators

    capped = copy.deepcopy(hw_model)
    capped.config = capped.config.replace(mask_pe_max=1)
    est, _, _ = estimate_accelerators(capped, tmp_path, "Pynq-Z2")
    assert set(est["group_size"].values()) == {1}


def test_stage_b_graph_has_one_mask_input(hw_bundle, hw_model):
    from qonnx.core.modelwrapper import ModelWrapper

    g = ModelWrapper(str(hw_bundle / "accel" / "stage_b_dataflow.onnx"))
    assert [i.name for i in g.graph.input if i.name == "mask"] == ["mask"]
    assert g.get_tensor_shape("mask") == [1, sum(hw_model.filters_per_layer)]
    assert str(g.get_tensor_datatype("mask")) == "BINARY"
    ops = [n.op_type for n in g.graph.node]
    assert ops.count("MaskSplit_rtl") == 1
    assert ops.count("MaskedMVAU_rtl") == len(hw_model.prunable_layers)


def _assert_bit_exact(bundle: Path, model, images: np.ndarray, masks: list[np.ndarray]):
    """FINN's execution of the bundle's folded graphs == PyTorch masked inference."""
    from dyfip_hw.export import reference_integers
    from dyfip_hw.testing import finn_execute, generic_graphs

    f_ref, l_ref = reference_integers(model, images, masks)
    feats, logits = finn_execute(generic_graphs(str(bundle)), images.transpose(0, 2, 3, 1),
                                 np.concatenate(masks, axis=1))
    assert np.array_equal(feats, f_ref.transpose(0, 2, 3, 1))
    assert np.array_equal(logits, l_ref)


@pytest.mark.parametrize("kind", ["all", "random", "one", "none"])
def test_folded_graphs_bit_exact_with_masks(hw_bundle, hw_model, digits, kind):
    """FINN's execution of the folded graphs == PyTorch masked inference, integer-exact."""
    _assert_bit_exact(hw_bundle, hw_model, digits.test.images[:12], _masks(hw_model, 12, kind))


@pytest.mark.parametrize("edge_weight_bits", [0, 8])
def test_per_filter_weight_scales_bit_exact(digits, edge_weight_bits):
    """Per-filter weight scales (``weight_scaling="channel"``) fold into FINN's thresholds;
    with ``edge_weight_bits=8`` (the Fashion preset) the first conv and the classifier have
    8-bit weights and stay exact."""
    from dyfip.model import load_checkpoint
    from dyfip_hw.testing import calibrated_bundle

    bundle = Path(calibrated_bundle(weight_scaling="channel", edge_weight_bits=edge_weight_bits))
    model = load_checkpoint(bundle / "model.pt")
    scale = model.stage_b[0].conv.quant_weight().scale
    assert scale.numel() == model.filters_per_layer[0] and scale.unique().numel() > 1
    edge_bits = [int(m.quant_weight().bit_width) for m in (model.stage_a[0].conv, model.head[-1])]
    assert edge_bits == [edge_weight_bits or model.config.weight_bits] * 2
    _assert_bit_exact(bundle, model, digits.test.images[:12], _masks(model, 12, "random"))


@pytest.mark.slow
def test_trained_bundle_with_tables(tiny_bundle, digits, tmp_path):
    """The real pipeline's model.pt + tables: FINN execution == PyTorch for table masks."""
    from dyfip.model import load_checkpoint
    from dyfip.tables import MaskTable
    from dyfip_hw.export import reference_integers
    from dyfip_hw.testing import built_bundle, finn_execute, generic_graphs

    shutil.copy(tiny_bundle / "model.pt", tmp_path / "model.pt")
    built_bundle(str(tmp_path))
    model = load_checkpoint(tmp_path / "model.pt")
    table = MaskTable.load(tiny_bundle / "tables.npz")
    subsets = [table.subsets[0], table.subsets[len(table.subsets) // 2], table.subsets[-1]]
    images = digits.test.images[:12]
    rows = [table.masks_for(subsets[i % len(subsets)]) for i in range(len(images))]
    masks = [np.stack([r[layer] for r in rows]).astype(np.uint8)
             for layer in range(len(model.prunable_layers))]
    f_ref, l_ref = reference_integers(model, images, masks)
    feats, logits = finn_execute(generic_graphs(str(tmp_path)), images.transpose(0, 2, 3, 1),
                                 np.concatenate(masks, axis=1))
    assert np.array_equal(logits, l_ref)
    assert np.array_equal(feats, f_ref.transpose(0, 2, 3, 1))


def test_bitstream_without_vivado_stops_clearly(hw_bundle, monkeypatch):
    from dyfip_hw import build
    from dyfip_hw.finn_env import ToolMissing

    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    monkeypatch.delenv("XILINX_HLS", raising=False)
    monkeypatch.delenv("XILINX_VITIS", raising=False)
    with pytest.raises(ToolMissing, match=r"step 'hw_ipgen' needs Vivado"):
        build.main(hw_bundle, "Pynq-Z2", bitstream=True)
    est = json.loads((hw_bundle / "estimates.json").read_text())
    assert est["bitstream"]["requested"] and est["bitstream"]["missing_tools"]


def test_cli_bitstream_message(hw_bundle, monkeypatch, capsys):
    from dyfip.cli import main

    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    assert main(["build", "--bundle", str(hw_bundle), "--bitstream"]) == 2
    err = capsys.readouterr().err
    assert "needs Vivado" in err and "hw_ipgen" in err and "2024.2" in err


def test_bitstream_refused_when_the_estimate_exceeds_the_board(hw_bundle, tmp_path, monkeypatch,
                                                              capsys):
    """No hardware step starts for accelerators the board cannot hold (the estimates are
    still written); the refusal names the slower folding of the unmasked layers that fits,
    which then builds (here: on to the missing Vivado), as --ignore-fit does."""
    from dyfip.cli import main
    from dyfip.model import load_checkpoint, save_checkpoint

    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    bundle = _bundle_copy(hw_bundle, tmp_path / "b", with_accel=False)
    # the digits net: ~36k LUTs at the Pynq-Z2's targets, ~21k with fixed_target_cycles=1024
    board = _board_file(tmp_path, "Small", resources={"LUT": 25000, "BRAM_18K": 280, "DSP": 220})
    args = ["build", "--bundle", str(bundle), "--board", str(board), "--bitstream"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"do not fit Small by FINN's estimate \(LUT \d+ > 25000; largest LUT: "
                     r"stage_\w/\w+ \d+", err), err
    assert re.search(r"with '--set fixed_target_cycles=1024' .*LUT \d+\) it fits", err), err
    assert "--ignore-fit" in err and "needs Vivado" not in err
    est = json.loads((bundle / "estimates.json").read_text())
    assert est["fits"] is False and est["fixed_target_cycles"] == 256
    assert not (bundle / "hw_build" / "overlay").exists()  # no hardware step ran
    assert main(args + ["--ignore-fit"]) == 2
    assert "step 'hw_ipgen' needs Vivado" in capsys.readouterr().err

    model = load_checkpoint(bundle / "model.pt")  # as 'dyfip fold --set ...' leaves it
    model.config = model.config.replace(fixed_target_cycles=1024)
    save_checkpoint(model, bundle / "model.pt")
    assert main(args) == 2
    assert "step 'hw_ipgen' needs Vivado" in capsys.readouterr().err
    est = json.loads((bundle / "estimates.json").read_text())
    assert est["fits"] is True and est["fixed_target_cycles"] == 1024


def test_no_slower_folding_fits(hw_model, tmp_path):
    from dyfip_hw.boards import load_board
    from dyfip_hw.build import check_fits, estimate_accelerators, fitting_targets

    tiny = load_board(_board_file(tmp_path, "Tiny", resources={"LUT": 1000}))
    est, _, _ = estimate_accelerators(hw_model, tmp_path / "b", tiny)
    assert fitting_targets(hw_model, tiny, est, tmp_path, max_target=1024) is None
    assert hw_model.config.fixed_target_cycles == 0  # the model itself is not changed
    with pytest.raises(ValueError, match="; no slower folding fits. Otherwise"):
        check_fits(est, tiny, lambda: None)


def test_slower_filter_enable_folding_that_fits(hw_model, tmp_path):
    """Where the filter-enable layers alone overflow the board, the search folds them slower
    too (digits net at these targets: LUT 51.1k; masked target 4096 and the other layers'
    2048: 27.6k, by FINN's estimate), and says the mask groups may change."""
    from dyfip_hw.boards import load_board
    from dyfip_hw.build import check_fits, estimate_accelerators, fitting_targets

    board = load_board(_board_file(tmp_path, "Wide", target_cycles_per_frame=2048,
                                   fixed_target_cycles=1024, resources={"LUT": 30000}))
    est, _, _ = estimate_accelerators(hw_model, tmp_path / "b", board)
    found = fitting_targets(hw_model, board, est, tmp_path, max_target=4096)
    assert found is not None and found[0] == {"mask_target_cycles": 4096,
                                              "fixed_target_cycles": 2048}
    assert found[1]["LUT"] <= 30000 < est["resources_total"]["LUT"]
    assert hw_model.config.mask_target_cycles == 0  # the model itself is not changed
    with pytest.raises(ValueError, match=r"with '--set mask_target_cycles=4096 --set "
                       r"fixed_target_cycles=2048' \(the filter-enable layers and the layers "
                       r"without filter enables folded slower, so the mask groups may change; "
                       r"LUT \d+\) it fits"):
        check_fits(est, board, lambda: found)
    probe = copy.copy(hw_model)
    probe.config = hw_model.config.replace(**found[0])
    slower, _, _ = estimate_accelerators(probe, tmp_path / "c", board)
    assert slower["fits"] and (slower["target_cycles_per_frame"],
                               slower["fixed_target_cycles"]) == (4096, 2048)


# ---- a failed build leaves the bundle as it was; bad inputs are named -------------------------
def _bundle_copy(hw_bundle: Path, dest: Path, with_accel: bool = True) -> Path:
    """model.pt (+ accel/ and estimates.json) of the session's built bundle."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(hw_bundle / "model.pt", dest / "model.pt")
    if with_accel:
        shutil.copytree(hw_bundle / "accel", dest / "accel")
        shutil.copy(hw_bundle / "estimates.json", dest / "estimates.json")
    return dest


def _snapshot(bundle: Path) -> dict[str, tuple[int, bytes]]:
    files = [bundle / "estimates.json", *sorted((bundle / "accel").rglob("*"))]
    return {str(f.relative_to(bundle)): (f.stat().st_mtime_ns, f.read_bytes())
            for f in files if f.is_file()}


DROP = object()  # a board-file change that removes the key


def _board_file(tmp_path: Path, name: str = "Pynq-Z2", **changes) -> Path:
    """A copy of the Pynq-Z2 board file with ``changes``, as ``boards/<name>.json``."""
    data = json.loads((Path(__file__).parents[1] / "hw" / "dyfip_hw" / "boards" /
                       "Pynq-Z2.json").read_text())
    data = {k: v for k, v in {**data, **changes}.items() if v is not DROP}
    path = tmp_path / "boards" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_failed_build_keeps_previous_accel(hw_bundle, tmp_path):
    """The second folding check (mask groups of the new build) fails after the export: the
    old accel/ and estimates.json stay untouched; a later good build replaces them and keeps
    other accel/ files (bitstream outputs)."""
    from dyfip_hw.build import main

    bundle = _bundle_copy(hw_bundle, tmp_path / "b")
    (bundle / "accel" / "dyfip.bit").write_bytes(b"bit")
    est = json.loads((bundle / "estimates.json").read_text())
    (bundle / "folding.json").write_text(json.dumps(
        {**est, "group_size": {k: 999 for k in est["group_size"]}}))
    before = _snapshot(bundle)
    with pytest.raises(ValueError, match=r"mask groups .*999.*not this Pynq-Z2 build"):
        main(bundle, "Pynq-Z2")
    assert _snapshot(bundle) == before
    assert not list((bundle / "hw_build").glob("staged-*"))
    (bundle / "folding.json").unlink()
    main(bundle, "Pynq-Z2")
    after = _snapshot(bundle)
    assert after["accel/dyfip.bit"] == before["accel/dyfip.bit"]
    assert after["accel/layers.json"][0] > before["accel/layers.json"][0]
    assert after["estimates.json"][0] > before["estimates.json"][0]
    assert not list((bundle / "hw_build").glob("staged-*"))


@pytest.mark.parametrize("name, text, message", [
    ("folding.json", "{}", r"folding.json has no field 'board': run 'dyfip fold"),
    ("folding.json", "[1]", r"folding.json: the file must be a JSON object"),
    ("folding.json", '{"board": "Pynq-Z2", "group_size": [2]}',
     r"folding.json: field 'group_size' must be a JSON object; got \[2\]"),
    ("folding.json", '{"board": ', r"folding.json is corrupt \(JSONDecodeError"),
    ("report.json", "{}", r"report.json has no field 'full\.cycles_avg': run 'dyfip evaluate"),
    ("report.json", '{"full": {"cycles_avg": "x"}}',
     r"report.json: field 'full.cycles_avg' must be a number; got 'x'"),
])
def test_bad_bundle_files_named(hw_bundle, tmp_path, capsys, name, text, message):
    """Malformed folding.json / report.json: the CLI error names the file and the field,
    before anything is built."""
    from dyfip.cli import main

    bundle = _bundle_copy(hw_bundle, tmp_path / "b", with_accel=False)
    (bundle / name).write_text(text)
    assert main(["build", "--bundle", str(bundle), "--board", "Pynq-Z2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dyfip build: error: ")
    assert str(bundle / name) in err
    assert re.search(message, err), err
    assert not (bundle / "accel").exists() and not (bundle / "estimates.json").exists()


@pytest.mark.parametrize("change, message", [
    (None, r"Pynq-Z2.json is corrupt \(JSONDecodeError"),  # truncated
    ({"part": DROP}, r"Pynq-Z2.json: missing keys \['part'\]"),
    ({"resources": {"LUT": 1, "FF": 2}}, r"Pynq-Z2.json: resources key 'FF' is not a FINN"),
    ({"resources": {"LUT": -1}}, r"Pynq-Z2.json: resources.LUT must be a number >= 0"),
    ({"clk_ns": "10"}, r"Pynq-Z2.json: clk_ns must be a number > 0; got '10'"),
    ({"clk_ns": 0}, r"Pynq-Z2.json: clk_ns must be a number > 0; got 0"),
    ({"target_cycles_per_frame": 1.5}, r"Pynq-Z2.json: target_cycles_per_frame must be an int"),
    ({"folding": []}, r"Pynq-Z2.json: folding must be an object"),
    ({"folding": {"stage_b.0": {"PE": True}}}, r"Pynq-Z2.json: folding.stage_b.0 must be"),
    ({"part": "xc7a35t"}, r"Pynq-Z2.json: unknown FPGA part 'xc7a35t'"),
    ({"shell_flow": "vitis_alveo"}, r"Pynq-Z2.json: shell_flow must be \"vivado_zynq\""),
])
def test_bad_board_file_named(tmp_path, change, message):
    """A malformed board file: a ValueError naming the file and the field, no traceback."""
    from dyfip_hw.boards import load_board

    path = _board_file(tmp_path, **(change or {}))
    if change is None:
        path.write_text(path.read_text()[:60])
    with pytest.raises(ValueError, match=message) as info:
        load_board(path)
    assert str(path) in str(info.value)


def test_board_files_load():
    from dyfip_hw.boards import available_boards, load_board

    for name in available_boards():
        board = load_board(name)
        assert board.part and board.fmax_mhz > 0 and board.path.endswith(f"{name}.json")


def test_folding_keys_checked_over_both_stages(hw_bundle, hw_model):
    """Board folding keys name a matrix-vector layer of either stage, by layer or FINN node
    name; others raise."""
    from dataclasses import replace

    from qonnx.core.modelwrapper import ModelWrapper

    from dyfip_hw.boards import load_board
    from dyfip_hw.build import check_board_folding_keys, stage_specs

    graphs = {s: ModelWrapper(str(hw_bundle / "accel" / f"{s}_dataflow.onnx"))
              for s in ("stage_a", "stage_b")}
    specs = stage_specs(hw_model, {s: Path(f"{s}.onnx") for s in graphs})
    nodes = graphs["stage_b"].graph.node
    layer = next(n.name for n in nodes if "MVAU" in n.op_type)
    window = next(n.name for n in nodes if "ConvolutionInputGenerator" in n.op_type)
    board = load_board("Pynq-Z2")
    fold = {"PE": 1}
    ok = replace(board, folding={"stage_a.0": fold, "classifier": fold, layer: fold})
    check_board_folding_keys(ok, graphs, specs)
    # a window node follows its layer's SIMD and has no PE: not a folding key
    bad = replace(board, folding={"stage_b.7": fold, "clasifier": {"PE": 5}, "stage_a.0": fold,
                                  window: {"SIMD": 4}})
    with pytest.raises(ValueError, match=rf"Pynq-Z2.json: folding keys \['{window}', "
                                         r"'clasifier', 'stage_b.7'\] match no layer; layer "
                                         r"names are \['stage_a.0', .*'classifier'\]"):
        check_board_folding_keys(bad, graphs, specs)


def test_build_rejects_unknown_folding_keys(hw_bundle, tmp_path, capsys):
    """``dyfip build`` with a misspelt folding key fails (it used to build as if absent)."""
    from dyfip.cli import main

    bundle = _bundle_copy(hw_bundle, tmp_path / "b", with_accel=False)
    board = _board_file(tmp_path, folding={"stage_b.7": {"PE": 2}, "clasifier": {"PE": 5}})
    assert main(["build", "--bundle", str(bundle), "--board", str(board)]) == 2
    err = capsys.readouterr().err
    assert f"board file {board}: folding keys ['clasifier', 'stage_b.7'] match no layer" in err
    assert not (bundle / "accel").exists() and not (bundle / "estimates.json").exists()


# ---- packaging and deployment hints --------------------------------------------------------
def test_wheel_ships_rtl_sources(tmp_path):
    """A (non-editable) wheel holds hw/dyfip_hw/rtl, and rtl_codegen run from it generates the HDL."""
    repo = Path(__file__).parents[1]
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("sw", "hw"):
        shutil.copytree(repo / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(src)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("dyfip-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import numpy as np, dyfip_hw.rtl_codegen as cg\n"
            f"assert cg.__file__.startswith({str(site)!r}), cg.__file__\n"
            "p = cg.MvauRtlParams(pe=1, simd=1, mw=6, mh=4, kk=2, out_bits=2, accu_bits=12)\n"
            "th = np.tile(np.arange(3), (4, 1))\n"
            f"print(*cg.generate_masked_mvau_rtl({str(tmp_path / 'gen')!r}, p, "
            "np.zeros((6, 4), int), th))\n")
    env = {**os.environ, "PYTHONPATH": str(site)}  # the wheel's files before the editable
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert {Path(f).name for f in run.stdout.split()} == {
        "dyfip_fifo.sv", "masked_mvau.sv", "masked_mvau_0.v"}


def test_deploy_hint_matches_board_readme():
    """``make deploy``'s closing hint gives the board install command of notebooks/README.md."""
    repo = Path(__file__).parents[1]
    hint = next(line for line in (repo / "Makefile").read_text().splitlines()
                if "on the board:" in line)
    command = hint.split("&&", 1)[1].split("(see", 1)[0].strip()
    assert "--no-build-isolation" in command  # the board installs offline
    assert command in (repo / "notebooks" / "README.md").read_text()
