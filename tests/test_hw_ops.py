"""MaskedMVAU / MaskSplit custom ops and clear errors for unsupported inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.finn


def _masked_node_model(mh=8, ch=4, kk=9, pixels=(1, 3, 3), pe=2, simd=2, seed=0):
    from dyfip_hw.finn_env import setup

    setup()
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    rng = np.random.default_rng(seed)
    mw = kk * ch
    w = rng.integers(-7, 8, (mw, mh)).astype(np.float32)
    thr = np.sort(rng.integers(-40, 40, (mh, 15)), axis=1).astype(np.float32)
    node = helper.make_node(
        "MaskedMVAU", ["x", "w", "t", "m"], ["y"], domain="finn.custom_op.fpgadataflow",
        backend="fpgadataflow", MW=mw, MH=mh, PE=pe, SIMD=simd, KK=kk,
        inputDataType="UINT4", weightDataType="INT4", outputDataType="UINT4",
        numInputVectors=list(pixels), layerName="stage_b.0")
    g = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*pixels, mw]),
         helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, mh + ch])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*pixels, mh])])
    model = ModelWrapper(qonnx_make_model(g))
    model.set_initializer("w", w)
    model.set_initializer("t", thr)
    model.set_tensor_datatype("x", DataType["UINT4"])
    model.set_tensor_datatype("w", DataType["INT4"])
    model.set_tensor_datatype("m", DataType["BINARY"])
    return model, w, thr


def test_masked_mvau_executes_reference_semantics():
    from qonnx.core.onnx_exec import execute_onnx

    from dyfip.kernels import Folding, masked_mvau, masked_mvau_cycles
    from qonnx.custom_op.registry import getCustomOp

    model, w, thr = _masked_node_model()
    rng = np.random.default_rng(1)
    for trial in range(4):
        x = rng.integers(0, 16, (1, 3, 3, 36)).astype(np.float32)
        m = rng.integers(0, 2, (1, 12)).astype(np.float32)
        y = execute_onnx(model, {"x": x, "m": m})["y"]
        ref = masked_mvau(x.reshape(1, 9, 36), w, thr, m, kk=9).reshape(1, 3, 3, 8)
        assert np.array_equal(y, ref)
    inst = getCustomOp(model.graph.node[0])
    fold = Folding(8, 36, 2, 2, 9)
    assert inst.get_exp_cycles() == 9 * 4 * 18 == inst.masked_cycles()
    f, c = np.array([1, 1, 0, 0, 0, 0, 0, 1], bool), np.array([1, 0, 0, 0], bool)
    assert inst.masked_cycles(f, c) == masked_mvau_cycles(fold, f, c, pixels=9)
    assert inst.get_instream_width(3) == 12 and inst.get_folded_input_shape(3) == (1, 1, 12)


def test_masked_mvau_specializes_to_rtl_with_estimates():
    from qonnx.custom_op.registry import getCustomOp

    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    model, _, _ = _masked_node_model()
    model = model.transform(SpecializeLayers("xc7z020clg400-1"))
    node = model.graph.node[0]
    assert node.op_type == "MaskedMVAU_rtl"
    res = getCustomOp(node).node_res_estimation("xc7z020clg400-1")
    assert res["LUT"] > 0


def test_rtl_of_a_layer_without_negative_weights(tmp_path):
    """FINN's MinimizeWeightBitWidth gives a layer without negative weights an unsigned type;
    the RTL (signed weights) gets one bit more instead of refusing the weights. Node-level
    rtlsim, which would stream the weights as data, is refused by name."""
    from qonnx.custom_op.registry import getCustomOp

    from finn.transformation.fpgadataflow.minimize_weight_bit_width import (
        MinimizeWeightBitWidth)
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    model, w, _ = _masked_node_model()
    model.set_initializer("w", np.abs(w))  # 0..7
    model = model.transform(SpecializeLayers("xc7z020clg400-1"))
    model = model.transform(MinimizeWeightBitWidth())
    inst = getCustomOp(model.graph.node[0])
    assert inst.get_nodeattr("weightDataType") == "UINT3"
    assert inst.rtl_params().weight_bits == 4
    inst.set_nodeattr("code_gen_dir_ipgen", str(tmp_path))
    inst.generate_hdl(model, "xc7z020clg400-1", 10)
    assert all(Path(f).is_file() for f in inst.get_rtl_file_list(abspath=True))
    inst.set_nodeattr("exec_mode", "rtlsim")
    with pytest.raises(NotImplementedError, match="node-level rtlsim of MaskedMVAU_rtl"):
        inst.execute_node({}, model.graph)


def test_masked_mvau_rejects_wrong_mask_length():
    from qonnx.core.onnx_exec import execute_onnx

    model, _, _ = _masked_node_model()
    model.set_tensor_shape("m", [1, 11])
    with pytest.raises(ValueError, match=r"mask of 11 bits, expected MH \+ CH = 8 \+ 4"):
        execute_onnx(model, {"x": np.zeros((1, 3, 3, 36), np.float32),
                             "m": np.ones((1, 11), np.float32)})


def test_mask_split_semantics_and_errors():
    from dyfip.dataflow import split_stage_mask

    mask = np.array([[1, 0, 1, 1, 0]])
    a, b = split_stage_mask(mask, [2, 3], first_channels=4)
    assert a.tolist() == [[1, 0, 1, 1, 1, 1]]
    assert b.tolist() == [[1, 1, 0, 1, 0]]
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        split_stage_mask(np.ones((1, 4)), [2, 3], 4)
    with pytest.raises(ValueError, match="0 or 1"):
        split_stage_mask(np.full((1, 5), 3), [2, 3], 4)


def test_unknown_board_and_part(tmp_path):
    from dyfip_hw.boards import load_board

    with pytest.raises(ValueError, match=r"unknown board 'Zedboard'.*Pynq-Z2"):
        load_board("Zedboard")
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"board": "X", "part": "xc7a35t", "clk_ns": 10,
                               "target_cycles_per_frame": 100}))
    with pytest.raises(ValueError, match="unknown FPGA part 'xc7a35t'"):
        load_board(bad)
    for name in ("Pynq-Z2", "KV260", "ZCU104"):
        assert load_board(name).part


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from dyfip_hw.build import stage_specs
    from dyfip_hw.export import export_stages
    from dyfip.model import load_checkpoint
    from dyfip_hw.testing import calibrated_bundle

    model = load_checkpoint(Path(calibrated_bundle()) / "model.pt")
    out = tmp_path_factory.mktemp("exp")
    return model, stage_specs(model, export_stages(model, out)), out


@pytest.mark.parametrize("fold, message", [
    ({"stage_b.0": {"PE": 5}}, r"layer stage_b.0: PE=5 does not divide MH=64"),
    ({"stage_b.1": {"SIMD": 48}},
     r"layer stage_b.1: SIMD=48 does not divide input channels CH=64"),
])
def test_folding_that_does_not_divide(exported, tmp_path, fold, message):
    from dyfip_hw.boards import load_board
    from dyfip_hw.builder import BuildConfig, build_stage
    from dyfip_hw.transforms import UnsupportedModel

    _, specs, _ = exported
    board = load_board("Pynq-Z2")
    path = tmp_path / "board.json"
    data = {k: getattr(board, k) for k in ("board", "part", "clk_ns", "target_cycles_per_frame",
                                           "mvau_wwidth_max", "shell_flow")}
    path.write_text(json.dumps({**data, "folding": fold}))
    with pytest.raises(UnsupportedModel, match=message):
        build_stage(specs[1], BuildConfig(board=load_board(path), out_dir=tmp_path))


def test_unsupported_layer_type_named(exported, tmp_path):
    from onnx import helper

    from dyfip_hw.boards import load_board
    from dyfip_hw.builder import BuildConfig, build_stage
    from dyfip_hw.transforms import CheckSupported, UnsupportedModel

    _, specs, _ = exported
    cfg = BuildConfig(board=load_board("Pynq-Z2"), out_dir=tmp_path,
                      steps=["qonnx_to_finn", "tidy_up", "streamline", "convert_to_hw"])
    model = build_stage(specs[0], cfg)
    hw = [n for n in model.graph.node if n.domain.startswith("finn.custom_op.fpgadataflow")]
    src = hw[1].output[0]
    sig = helper.make_node("Sigmoid", [src], ["sig_out"], name="Sigmoid_bad")
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name == src:
                n.input[i] = "sig_out"
    model.graph.node.insert(list(model.graph.node).index(hw[1]) + 1, sig)
    with pytest.raises(UnsupportedModel, match="layer type Sigmoid .node Sigmoid_bad."):
        model.transform(CheckSupported(list(specs[0].layer_names)))


def test_unsupported_bit_width_named(tmp_path):
    from dyfip_hw.boards import load_board
    from dyfip_hw.build import stage_specs
    from dyfip_hw.builder import BuildConfig, build_stage
    from dyfip_hw.export import export_stages
    from dyfip_hw.testing import calibrated_model
    from dyfip_hw.transforms import UnsupportedModel

    model = calibrated_model(weight_bits=12)
    specs = stage_specs(model, export_stages(model, tmp_path))
    with pytest.raises(UnsupportedModel, match=r"layer stage_a.0: weight datatype INT\d+ is not"):
        build_stage(specs[0], BuildConfig(board=load_board("Pynq-Z2"), out_dir=tmp_path))
