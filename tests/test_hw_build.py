"""FINN flow of both stages: export exactness, build, estimates, bit-exact masked execution."""
from __future__ import annotations

import json
import shutil
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
        build.main(hw_bundle, "Pynq-Z2", estimate=False, bitstream=True)
    est = json.loads((hw_bundle / "estimates.json").read_text())
    assert est["bitstream"]["requested"] and est["bitstream"]["missing_tools"]


def test_cli_bitstream_message(hw_bundle, monkeypatch, capsys):
    from dyfip.cli import main

    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    assert main(["build", "--bundle", str(hw_bundle), "--bitstream"]) == 2
    err = capsys.readouterr().err
    assert "needs Vivado" in err and "hw_ipgen" in err and "2024.2" in err
