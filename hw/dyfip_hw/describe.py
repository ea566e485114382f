"""Per-layer facts of a folded stage graph: estimates.json and the numpy accelerator export.

:func:`describe_stage` walks a folded, specialised dataflow model (see
:mod:`dyfip_hw.builder`) and returns the stage description consumed by
:mod:`dyfip.dataflow` (interpreter and :func:`dyfip.dataflow.stage_cycles`) plus its integer
parameters; the same layer entries, with FINN's resource estimates, make ``estimates.json``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from .ops import MASK_INPUT
from .transforms import MASK_NAME, base_op_type

RESOURCE_KEYS = {"LUT": "LUT", "BRAM_18K": "BRAM_18K", "URAM": "URAM", "DSP": "DSP"}


def _dt(dt) -> dict[str, Any]:
    return {"datatype": dt.name, "range": [int(dt.min()), int(dt.max())]}


def _attrs(inst, op: str) -> dict[str, Any]:
    g = inst.get_nodeattr
    if op == "FMPadding":
        return {"padding": list(g("Padding")), "SIMD": g("SIMD")}
    if op == "ConvolutionInputGenerator":
        return {"kernel": list(g("ConvKernelDim")), "stride": list(g("Stride")),
                "dilation": list(g("Dilation")), "ifm_dim": list(g("IFMDim")),
                "ofm_dim": list(g("OFMDim")), "channels": g("IFMChannels"), "SIMD": g("SIMD"),
                "depthwise": g("depthwise")}
    if op == "Pool":
        return {"function": g("Function"), "kernel": list(g("KernelSize")),
                "channels": g("Channels"), "PE": g("PE")}
    if op in ("MVAU", "MaskedMVAU"):
        pixels = int(np.prod(g("numInputVectors")))
        out = {"MW": g("MW"), "MH": g("MH"), "PE": g("PE"), "SIMD": g("SIMD"),
               "KK": g("KK") if op == "MaskedMVAU" else 1, "pixels": pixels,
               "no_activation": g("noActivation"), "act_val": g("ActVal"),
               "weight_datatype": inst.get_input_datatype(1).name,
               "acc_datatype": g("accDataType"), "macs": pixels * g("MW") * g("MH")}
        return out
    if op == "MaskSplit":
        return {"filters": [int(f) for f in g("filters")], "first_channels": g("firstChannels")}
    raise ValueError(f"node {inst.onnx_node.name}: op {op} is not supported by the "
                     "numpy accelerator export")


def describe_stage(model: ModelWrapper, name: str, layer_names: list[str], fpgapart: str
                   ) -> tuple[dict, dict[str, np.ndarray]]:
    """Stage description (JSON-able) and its integer parameters of a folded dataflow model.

    ``layer_names`` name the matrix-vector layers in order (``stage_b.0`` ... ``classifier``).
    """
    params: dict[str, np.ndarray] = {}
    layers, names = [], iter(layer_names)
    for node in model.graph.node:
        op = base_op_type(node)
        inst = getCustomOp(node)
        streams = [i for i in node.input if model.get_initializer(i) is None]
        entry = {"name": node.name, "op": op, "impl": node.op_type, "inputs": streams,
                 "outputs": list(node.output),
                 "out_shape": [int(d) for d in model.get_tensor_shape(node.output[0])],
                 **_dt(inst.get_output_datatype()), **_attrs(inst, op),
                 "cycles": int(inst.get_exp_cycles())}
        if op in ("MVAU", "MaskedMVAU"):
            entry["layer"] = next(names)
            w = model.get_initializer(node.input[1])
            params[f"{node.name}.weights"] = np.asarray(w).astype(np.int8 if np.abs(w).max() < 128
                                                                  else np.int32)
            if not entry["no_activation"]:
                params[f"{node.name}.thresholds"] = np.asarray(
                    model.get_initializer(node.input[2])).astype(np.int64)
        res = inst.node_res_estimation(fpgapart)
        entry["resources"] = {k: float(res.get(k, 0)) for k in RESOURCE_KEYS}
        layers.append(entry)
    inputs = []
    for inp in model.graph.input:
        dt = model.get_tensor_datatype(inp.name)
        role = "mask" if inp.name == MASK_NAME else ("pixels" if name == "stage_a" else "features")
        inputs.append({"role": role, "tensor": inp.name,
                       "shape": [int(d) for d in model.get_tensor_shape(inp.name)], **_dt(dt)})
    out = model.graph.output[0].name
    outputs = [{"tensor": out, "shape": [int(d) for d in model.get_tensor_shape(out)],
                **_dt(model.get_tensor_datatype(out))}]
    return {"inputs": inputs, "outputs": outputs, "layers": layers}, params


def summarize(stage: dict) -> dict[str, Any]:
    """Stage totals: full cycles (latency = sum, bottleneck = max), MACs, resources, efficiency.

    Efficiency = ideal MAC-cycles / modelled cycles, where ideal MAC-cycles = total MACs /
    total multipliers (sum of PE*SIMD) and modelled = the bottleneck layer's cycles: the
    multiplier utilisation of the pipeline at full throughput.
    """
    layers = stage["layers"]
    mv = [la for la in layers if la["op"] in ("MVAU", "MaskedMVAU")]
    cycles = [la["cycles"] for la in layers]
    macs = sum(la["macs"] for la in mv)
    mults = sum(la["PE"] * la["SIMD"] for la in mv)
    bottleneck = max(cycles)
    return {
        "latency_cycles": int(sum(cycles)), "bottleneck_cycles": int(bottleneck),
        "macs": int(macs), "multipliers": int(mults),
        "efficiency": round(macs / mults / bottleneck, 4) if mults and bottleneck else None,
        "resources": {k: round(sum(la["resources"][k] for la in layers), 1)
                      for k in RESOURCE_KEYS},
    }


def check_mask_input(model: ModelWrapper) -> None:
    """The stage-B graph has exactly one BINARY mask input feeding the MaskSplit."""
    consumers = model.find_consumers(MASK_NAME) or []
    if [base_op_type(c) for c in consumers] != ["MaskSplit"]:
        raise ValueError("stage B: the mask input must feed exactly one MaskSplit")
    for node in model.graph.node:
        if base_op_type(node) == "MaskedMVAU" and len(node.input) != MASK_INPUT + 1:
            raise ValueError(f"{node.name}: MaskedMVAU without its mask input")
