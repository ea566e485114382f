"""A builder of named steps (like FINN's ``build_dataflow``) for one stage graph.

``build_stage(spec, cfg)`` runs ``cfg.steps`` in order; each step is a function
``(model, spec, cfg) -> model`` registered in :data:`STEPS`. The default estimate flow:

    qonnx_to_finn -> tidy_up -> streamline -> convert_to_hw -> check_supported
    -> insert_filter_enables -> create_dataflow_partition -> specialize_layers
    -> set_folding -> minimize_bit_width

(:data:`ESTIMATE_STEPS`); the bitstream flow appends :data:`BITSTREAM_STEPS`, which need
Vivado / Vitis HLS and stop with :class:`~dyfip_hw.finn_env.ToolMissing` without them.
The result is the folded, specialised dataflow model (the accelerator) of the stage.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dyfip.tables import Budget

from .boards import Board
from .finn_env import ToolMissing, missing_tools, setup

setup()

from qonnx.core.datatype import DataType  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402
from qonnx.transformation.fold_constants import FoldConstants  # noqa: E402
from qonnx.transformation.general import (  # noqa: E402
    GiveReadableTensorNames, GiveUniqueNodeNames, RemoveStaticGraphInputs, RemoveUnusedTensors)
from qonnx.transformation.infer_data_layouts import InferDataLayouts  # noqa: E402
from qonnx.transformation.infer_datatypes import InferDataTypes  # noqa: E402
from qonnx.transformation.infer_shapes import InferShapes  # noqa: E402
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul  # noqa: E402
from qonnx.util.cleanup import cleanup_model  # noqa: E402

import finn.transformation.streamline.absorb as absorb  # noqa: E402
from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen  # noqa: E402,E501
from finn.transformation.fpgadataflow.convert_to_hw.fm_padding import InferFMPadding  # noqa: E402
from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool  # noqa: E402
from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (  # noqa: E402,E501
    InferQuantizedMatrixVectorActivation)
from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (  # noqa: E402
    InferThresholdingLayer)
from finn.transformation.fpgadataflow.create_dataflow_partition import (  # noqa: E402
    CreateDataflowPartition)
from finn.transformation.fpgadataflow.minimize_accumulator_width import (  # noqa: E402
    MinimizeAccumulatorWidth)
from finn.transformation.fpgadataflow.minimize_weight_bit_width import (  # noqa: E402
    MinimizeWeightBitWidth)
from finn.transformation.fpgadataflow.set_folding import SetFolding  # noqa: E402
from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers  # noqa: E402
from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN  # noqa: E402
from finn.transformation.streamline import Streamline  # noqa: E402
from finn.transformation.streamline.reorder import MakeMaxPoolNHWC  # noqa: E402
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds  # noqa: E402

from .transforms import (  # noqa: E402
    MASK_NAME, ApplyFolding, CheckSupported, FoldMaskedLayers, InsertFilterEnables, MatchWindowSIMD,
    check_folding, layer_map)


@dataclass(frozen=True)
class StageSpec:
    """One stage graph: its QONNX file, integer input type and layer names in order."""

    name: str  # "stage_a", "stage_b" or "overlay" (both, for the bitstream)
    onnx: Path
    input_datatype: str  # "UINT8" for pixels, "UINT<act_bits>" for features
    layer_names: tuple[str, ...]  # every matrix-vector layer, graph order
    prunable: tuple[str, ...] = ()  # layers that get filter enables (stage B)


@dataclass
class BuildConfig:
    """Settings of one accelerator build (see :func:`build_stage`)."""

    board: Board
    out_dir: Path
    steps: list[str] = field(default_factory=lambda: list(ESTIMATE_STEPS))
    mask_keep: Budget = 0.125  # kept fraction of filters (or one per layer): the tables' budget
    mask_pe_max: int = 0  # largest PE (= mask group) of a filter-enable layer; 0: no cap
    save_intermediate: bool = False
    log: list[dict] = field(default_factory=list)  # filled: step, seconds


Step = Callable[[ModelWrapper, StageSpec, BuildConfig], ModelWrapper]
STEPS: dict[str, Step] = {}


def step(fn: Step) -> Step:
    """Register a build step under its function name without the ``step_`` prefix."""
    STEPS[fn.__name__.removeprefix("step_")] = fn
    return fn


def _tidy(model: ModelWrapper) -> ModelWrapper:
    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(),
              InferDataTypes(), RemoveStaticGraphInputs()):
        model = model.transform(t)
    return model


@step
def step_qonnx_to_finn(model, spec, cfg):
    model = cleanup_model(model)
    model.set_tensor_datatype(model.graph.input[0].name, DataType[spec.input_datatype])
    return _tidy(model.transform(ConvertQONNXtoFINN()))


@step
def step_tidy_up(model, spec, cfg):
    return _tidy(model)


@step
def step_streamline(model, spec, cfg):
    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    for t in (LowerConvsToMatMul(), MakeMaxPoolNHWC(), absorb.AbsorbTransposeIntoMultiThreshold(),
              MakeMaxPoolNHWC(), absorb.AbsorbConsecutiveTransposes(), Streamline(),
              RoundAndClipThresholds(), InferDataLayouts(), RemoveUnusedTensors()):
        model = model.transform(t)
    return model


@step
def step_convert_to_hw(model, spec, cfg):
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten

    for t in (InferQuantizedMatrixVectorActivation(), InferThresholdingLayer(), InferPool(),
              InferFMPadding(), InferConvInpGen(), absorb.AbsorbConsecutiveTransposes(),
              RemoveCNVtoFCFlatten(), GiveUniqueNodeNames(), InferDataLayouts(),
              InferDataTypes(), InferShapes()):
        model = model.transform(t)
    return model


@step
def step_check_supported(model, spec, cfg):
    return model.transform(CheckSupported(list(spec.layer_names)))


@step
def step_insert_filter_enables(model, spec, cfg):
    if not spec.prunable:
        return model
    model = model.transform(InsertFilterEnables(list(spec.layer_names), list(spec.prunable)))
    return model.transform(InferShapes()).transform(InferDataTypes())


@step
def step_create_dataflow_partition(model, spec, cfg):
    part_dir = Path(cfg.out_dir) / spec.name / "partitions"
    part_dir.mkdir(parents=True, exist_ok=True)
    parent = model.transform(CreateDataflowPartition(partition_model_dir=str(part_dir)))
    sdp = parent.get_nodes_by_op_type("StreamingDataflowPartition")
    if len(sdp) != 1:
        raise ValueError(f"{spec.name}: expected one dataflow partition, got {len(sdp)}")
    parent.save(str(Path(cfg.out_dir) / spec.name / "dataflow_parent.onnx"))
    model = ModelWrapper(getCustomOp(sdp[0]).get_nodeattr("model"))
    # stream order of the accelerator: data first, then the mask (FINN driver's input order)
    inputs = sorted(model.graph.input, key=lambda i: i.name == MASK_NAME)
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    return model


@step
def step_specialize_layers(model, spec, cfg):
    model = model.transform(SpecializeLayers(cfg.board.part))
    return model.transform(InferShapes()).transform(InferDataTypes())


@step
def step_set_folding(model, spec, cfg):
    """Board folding for listed layers, FINN's SetFolding + FoldMaskedLayers for the rest."""
    names = list(spec.layer_names)
    # masked layers first: SetFolding skips them, and would otherwise relax its target to
    # their unfolded cycles in its second pass
    model = model.transform(FoldMaskedLayers(cfg.board.target_cycles_per_frame, cfg.mask_keep,
                                             given=cfg.board.folding, max_pe=cfg.mask_pe_max))
    model = model.transform(SetFolding(cfg.board.fixed_target,
                                       mvau_wwidth_max=cfg.board.mvau_wwidth_max,
                                       two_pass_relaxation=False))
    model = model.transform(ApplyFolding(names, cfg.board.folding))
    model = model.transform(MatchWindowSIMD())
    for name, node in layer_map(model, names).items():
        check_folding(name, getCustomOp(node))
    return model


@step
def step_minimize_bit_width(model, spec, cfg):
    model = model.transform(MinimizeWeightBitWidth())
    return model.transform(MinimizeAccumulatorWidth())


def _needs(tool_step: str, cfg: BuildConfig) -> None:
    import os

    missing = missing_tools()
    if missing:
        raise ToolMissing(missing[0], tool_step,
                          f"{cfg.out_dir} (generated HDL/HLS: {os.environ['FINN_BUILD_DIR']})")


def _finn_cfg(spec: StageSpec, cfg: BuildConfig):
    from finn.builder.build_dataflow_config import (DataflowBuildConfig, DataflowOutputType,
                                                    ShellFlowType)

    return DataflowBuildConfig(
        output_dir=str(Path(cfg.out_dir) / spec.name / "finn"),
        synth_clk_period_ns=cfg.board.clk_ns, board=cfg.board.board, fpga_part=cfg.board.part,
        shell_flow_type=ShellFlowType.VIVADO_ZYNQ,
        generate_outputs=[DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER,
                          DataflowOutputType.DEPLOYMENT_PACKAGE])


def _finn_step(name: str, needs_tools: bool = True) -> Step:
    """Wrap one of FINN's own build steps (all but code generation need Vivado / Vitis HLS)."""

    def run(model, spec, cfg):
        if needs_tools:
            _needs(name, cfg)
        from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

        return build_dataflow_step_lookup[f"step_{name}"](model, _finn_cfg(spec, cfg))

    run.__name__ = f"step_{name}"
    return step(run)


BITSTREAM_FINN_STEPS = ("hw_codegen", "hw_ipgen", "set_fifo_depths", "create_stitched_ip",
                        "synthesize_bitfile", "make_driver", "deployment_package")
for _name in BITSTREAM_FINN_STEPS:
    _finn_step(_name, needs_tools=_name != "hw_codegen")

ESTIMATE_STEPS = ("qonnx_to_finn", "tidy_up", "streamline", "convert_to_hw", "check_supported",
                  "insert_filter_enables", "create_dataflow_partition", "specialize_layers",
                  "set_folding", "minimize_bit_width")
BITSTREAM_STEPS = BITSTREAM_FINN_STEPS


@contextlib.contextmanager
def _finn_chatter(log_path: Path):
    """Send FINN's prints and warnings (SetFolding notes etc.) to ``log_path``."""
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        yield


def build_stage(spec: StageSpec, cfg: BuildConfig) -> ModelWrapper:
    """Run ``cfg.steps`` on ``spec.onnx``; returns (and saves) the folded dataflow model."""
    unknown = [s for s in cfg.steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown build steps {unknown}; available: {sorted(STEPS)}")
    out = Path(cfg.out_dir) / spec.name
    out.mkdir(parents=True, exist_ok=True)
    model = ModelWrapper(str(spec.onnx))
    for name in cfg.steps:
        t0 = time.perf_counter()
        with _finn_chatter(out / "finn.log"):
            model = STEPS[name](model, spec, cfg)
        cfg.log.append({"stage": spec.name, "step": name,
                        "seconds": round(time.perf_counter() - t0, 3)})
        if cfg.save_intermediate:
            model.save(str(out / f"{name}.onnx"))
        if name == "minimize_bit_width" or name == cfg.steps[-1]:
            model.save(str(out / "dataflow.onnx"))
    return model
