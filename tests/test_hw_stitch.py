"""The bitstream flow up to the Vivado call: FINN's CreateStitchedIP on the real dataflow
graphs (Tcl block design: every HDL file of DyFiP's RTL ops added, MaskSplit's per-layer
words wired into each MaskedMVAU's mask stream) and the single overlay of both stages."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.finn


class StopBeforeVivado(Exception):
    pass


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(model, folded stage graphs, build config, accel dir) of a calibrated digits net."""
    from dyfip_hw.build import estimate_accelerators
    from dyfip_hw.testing import calibrated_model

    model = calibrated_model()
    out = tmp_path_factory.mktemp("build")
    _, graphs, cfg = estimate_accelerators(model, out, "Pynq-Z2", mask_keep=0.25)
    return model, graphs, cfg, out / "accel"


def after_codegen(graph, cfg, ip_root: Path):
    """``graph`` after FINN's hw_codegen and the ipgen of its RTL nodes (no tools needed);
    an HLS node's IP needs Vitis HLS, so stand in for what hw_ipgen would set."""
    from qonnx.custom_op.registry import getCustomOp

    from dyfip_hw.builder import STEPS, StageSpec

    graph = STEPS["hw_codegen"](graph, StageSpec("overlay", ip_root, "UINT8", ()), cfg)
    for node in graph.graph.node:
        op = getCustomOp(node)
        if node.op_type.endswith("_rtl"):
            op.code_generation_ipgen(graph, cfg.board.part, cfg.board.clk_ns)
        else:
            (ip_root / node.name).mkdir(parents=True)
            op.set_nodeattr("ip_path", str(ip_root / node.name))
            op.set_nodeattr("ip_vlnv", f"xilinx.com:hls:{node.name}:1.0")
    return graph


def stitch_tcl(graph, cfg, tmp_path, monkeypatch) -> str:
    """The make_project.tcl FINN's CreateStitchedIP writes before it calls Vivado."""
    from finn.transformation.fpgadataflow import create_stitched_ip as stitch

    graph = after_codegen(graph, cfg, tmp_path / "ip")
    monkeypatch.setattr(stitch, "make_build_dir", lambda prefix: str(tmp_path))

    def stop(*args, **kwargs):
        raise StopBeforeVivado

    monkeypatch.setattr(stitch, "resolve_xilinx_tool", stop)  # Tcl written, Vivado next
    with pytest.raises(StopBeforeVivado):
        graph.transform(stitch.CreateStitchedIP(cfg.board.part, cfg.board.clk_ns))
    return graph, (tmp_path / "make_project.tcl").read_text()


def external_pins(tcl: str) -> list[str]:
    return re.findall(r"make_bd_intf_pins_external \[get_bd_intf_pins (\S+)\]", tcl)


def test_stage_b_stitches_up_to_vivado(built, tmp_path, monkeypatch):
    from qonnx.custom_op.registry import getCustomOp

    model, graphs, cfg, _ = built
    graph, tcl = stitch_tcl(graphs["stage_b"], cfg, tmp_path, monkeypatch)
    ours = [n for n in graph.graph.node if n.op_type in ("MaskedMVAU_rtl", "MaskSplit_rtl")]
    for node in ours:  # one existing file per add_files, as FINN checks
        for line in getCustomOp(node).code_generation_ipi():
            assert line in tcl
            if line.startswith("add_files"):
                assert len(line.split()) == 3 and Path(line.split()[2]).is_file(), line
    masked = [n.name for n in ours if n.op_type == "MaskedMVAU_rtl"]
    assert len(masked) == len(model.prunable_layers)
    cores = re.findall(r"add_files -norecurse (\S+/(?:masked_mvau|dyfip_fifo)\.sv)", tcl)
    assert len(cores) == 2 * len(masked) and len(set(cores)) == 2  # one copy of each module
    for i, name in enumerate(masked):
        assert (f"connect_bd_intf_net [get_bd_intf_pins MaskSplit_rtl_0/out{i}_V] "
                f"[get_bd_intf_pins {name}/in1_V]") in tcl
    # graph inputs in order (features, mask) become s_axis_0, s_axis_1; logits m_axis_0
    first = graph.find_consumer(graph.graph.input[0].name).name
    last = graph.find_producer(graph.graph.output[0].name).name
    assert external_pins(tcl) == [f"{first}/in0_V", "MaskSplit_rtl_0/in0_V", f"{last}/out0_V"]


def test_overlay_merges_both_stages(built, tmp_path, monkeypatch):
    """One graph computes what the two stages compute, and stitches into one IP whose
    streams are the driver's: pixels, features, mask in; features, logits out."""
    from qonnx.core.onnx_exec import execute_onnx

    from dyfip_hw.overlay import merge_stages
    from dyfip_hw.transforms import ToGenericOps

    _, graphs, cfg, _ = built
    merged = merge_stages(graphs)
    names = [n.name for n in merged.graph.node]
    assert len(set(names)) == len(names) == sum(len(g.graph.node) for g in graphs.values())
    ga, gb, gm = (g.transform(ToGenericOps()) for g in (graphs["stage_a"], graphs["stage_b"],
                                                         merged))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, ga.get_tensor_shape(ga.graph.input[0].name))
    feats = execute_onnx(ga, {ga.graph.input[0].name: pixels.astype(np.float32)})
    feats = feats[ga.graph.output[0].name]
    mask = rng.integers(0, 2, gb.get_tensor_shape("mask")).astype(np.float32)
    logits = execute_onnx(gb, {gb.graph.input[0].name: feats, "mask": mask}
                          )[gb.graph.output[0].name]
    out = execute_onnx(gm, dict(zip([i.name for i in gm.graph.input],
                                    (pixels.astype(np.float32), feats, mask))))
    assert np.array_equal(out[gm.graph.output[0].name], feats)
    assert np.array_equal(out[gm.graph.output[1].name], logits)
    _, tcl = stitch_tcl(merged, cfg, tmp_path, monkeypatch)
    ports = re.findall(r"set_property name ([sm]_axis_\d) ", tcl)
    assert ports == ["s_axis_0", "s_axis_1", "s_axis_2", "m_axis_0", "m_axis_1"]
    assert external_pins(tcl)[2].startswith("MaskSplit_rtl_0/")  # the mask is the third


def _finn_shapes(io, idmas, odmas):
    """What FINN's get_driver_shapes reports for an overlay with these IODMA names."""
    from dyfip_hw.overlay import STAGES

    ins = [s for name in STAGES for s in io[name].inputs.values()]
    outs = [io[name].output for name in STAGES]
    return {"idma_names": idmas, "odma_names": odmas,
            "ishape_folded": [s.shape_folded for s in ins],
            "ishape_packed": [s.shape_packed for s in ins],
            "oshape_folded": [s.shape_folded for s in outs],
            "oshape_packed": [s.shape_packed for s in outs]}


def test_overlay_files_for_the_driver(built, tmp_path):
    """accel/dyfip.bit + .hwh and a driver.json naming the IODMAs FINN gave each stream."""
    import shutil

    from dyfip.bundle import read_json
    from dyfip.driver.iospec import derive_io, load_io
    from dyfip_hw.overlay import write_overlay

    *_, accel = built
    accel = Path(shutil.copytree(accel, tmp_path / "accel"))
    description = read_json(accel / "layers.json")
    io = derive_io(description)
    finn_out = tmp_path / "finn"
    shapes = _finn_shapes(io, ["idma2", "idma0", "idma1"], ["odma1", "odma0"])
    with pytest.raises(FileNotFoundError, match="finn-accel.bit, .*finn-accel.hwh not found"):
        write_overlay(finn_out, accel, shapes, "h", 10.0)
    assert not list(accel.glob("dyfip.*")) and not (accel / "driver.json").exists()
    (finn_out / "bitfile").mkdir(parents=True)
    for suffix in (".bit", ".hwh"):
        (finn_out / "bitfile" / f"finn-accel{suffix}").write_bytes(b"overlay" + suffix.encode())
    assert write_overlay(finn_out, accel, shapes, "h", 10.0) == accel / "dyfip.bit"
    assert (accel / "dyfip.hwh").read_bytes() == b"overlay.hwh"
    loaded = load_io(accel, description)
    assert [s.dma for s in loaded["stage_a"].inputs.values()] == ["idma2"]
    assert [s.dma for s in loaded["stage_b"].inputs.values()] == ["idma0", "idma1"]
    assert (loaded["stage_a"].output.dma, loaded["stage_b"].output.dma) == ("odma1", "odma0")
    assert read_json(accel / "driver.json")["model_hash"] == "h"


def test_overlay_streams_must_match_the_driver(built):
    from dyfip.bundle import read_json
    from dyfip.driver.iospec import derive_io
    from dyfip_hw.overlay import overlay_io

    *_, accel = built
    io = derive_io(read_json(accel / "layers.json"))
    shapes = _finn_shapes(io, ["idma0", "idma1", "idma2"], ["odma0", "odma1"])
    shapes["ishape_folded"][2] = (1, 99)
    with pytest.raises(RuntimeError, match="overlay's mask stream is folded"):
        overlay_io(io, shapes)
    with pytest.raises(RuntimeError, match="2 input and 2 output DMAs, the driver expects 3"):
        overlay_io(io, {**shapes, "idma_names": ["idma0", "idma1"]})


def test_finn_driver_shapes_of_the_overlay_are_the_drivers(built, tmp_path):
    """FINN's own Zynq preparation of the overlay (IODMAs, width converters, partitions: the
    part of its bitstream step before Vivado) gives every stream the folded and packed shape
    the host driver uses; the DMA names come from the block design (Vivado), so stand in."""
    from finn.transformation.fpgadataflow.create_dataflow_partition import (
        CreateDataflowPartition)
    from finn.transformation.fpgadataflow.floorplan import Floorplan
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.util.basic import get_driver_shapes
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames

    from dyfip.bundle import read_json
    from dyfip.driver.iospec import derive_io
    from dyfip_hw.overlay import merge_stages, overlay_io

    _, graphs, cfg, accel = built
    model = merge_stages(graphs)
    for step in (InsertIODMA(64), InsertDWC(), SpecializeLayers(cfg.board.part), Floorplan(),
                 CreateDataflowPartition(partition_model_dir=str(tmp_path))):
        model = model.transform(step).transform(GiveUniqueNodeNames())
        model = model.transform(GiveReadableTensorNames())
    shapes = get_driver_shapes(model)
    assert len(shapes["idma_names"]) == 3 and len(shapes["odma_names"]) == 2
    shapes.update(idma_names=["i0", "i1", "i2"], odma_names=["o0", "o1"])
    io = overlay_io(derive_io(read_json(accel / "layers.json")), shapes)  # raises on a mismatch
    assert [s.dma for s in io["stage_b"].inputs.values()] == ["i1", "i2"]
