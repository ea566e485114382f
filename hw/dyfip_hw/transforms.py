"""Small graph transformations of the DyFiP flow (qonnx ``Transformation`` classes)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from .ops import MASK_INPUT

HW_DOMAIN = "finn.custom_op.fpgadataflow"
MVAU_TYPES = ("MVAU", "MaskedMVAU")
MASK_NAME = "mask"


class UnsupportedModel(ValueError):
    """The network uses a layer type, bit width or folding the accelerator cannot build."""


def base_op_type(node) -> str:
    """``MVAU_hls`` -> ``MVAU``: the generic op type of a (possibly specialised) node."""
    for suffix in ("_hls", "_rtl"):
        if node.domain.startswith(HW_DOMAIN) and node.op_type.endswith(suffix):
            return node.op_type[: -len(suffix)]
    return node.op_type


def mvau_nodes(model: ModelWrapper) -> list:
    """(Masked)MVAU nodes in graph order (= layer order of the network)."""
    return [n for n in model.graph.node if base_op_type(n) in MVAU_TYPES]


def layer_map(model: ModelWrapper, layer_names: list[str]) -> dict[str, object]:
    """Layer name -> matrix-vector node, matched in order; counts must agree."""
    nodes = mvau_nodes(model)
    if len(nodes) != len(layer_names):
        raise UnsupportedModel(f"expected {len(layer_names)} matrix-vector layers "
                               f"{layer_names}, the graph has {len(nodes)}")
    return dict(zip(layer_names, nodes))


class CheckSupported(Transformation):
    """After convert_to_hw: only HW layers inside, supported bit widths, unsigned masked outputs.

    Outside the dataflow part only a leading ``Transpose`` and trailing ``Transpose``/``Mul``
    (the output scale) are allowed.
    """

    def __init__(self, layer_names: list[str], max_bits: int = 8):
        super().__init__()
        self.layer_names, self.max_bits = layer_names, max_bits

    def apply(self, model):
        nodes = list(model.graph.node)
        hw = [i for i, n in enumerate(nodes) if n.domain.startswith(HW_DOMAIN)]
        if not hw:
            raise UnsupportedModel("no layer could be converted to hardware")
        for i, n in enumerate(nodes):
            inside = hw[0] <= i <= hw[-1]
            if n.domain.startswith(HW_DOMAIN):
                continue
            allowed = ("Transpose",) if i < hw[0] else ("Transpose", "Mul", "Reshape")
            if inside or n.op_type not in allowed:
                raise UnsupportedModel(
                    f"layer type {n.op_type} (node {n.name}) has no hardware implementation; "
                    "supported: 3x3 QuantConv2d + BatchNorm + QuantReLU [+ MaxPool 2x2], "
                    "QuantLinear without bias")
        for name, n in layer_map(model, self.layer_names).items():
            inst = getCustomOp(n)
            for what, dt in (("input", inst.get_input_datatype(0)),
                             ("weight", inst.get_input_datatype(1))):
                if not dt.is_integer() or dt.bitwidth() > self.max_bits:
                    raise UnsupportedModel(f"layer {name}: {what} datatype {dt.name} is not "
                                           f"an integer type of at most {self.max_bits} bits")
        return model, False


class InsertFilterEnables(Transformation):
    """Replace the MVAUs of the prunable layers by MaskedMVAUs fed from one global mask.

    Adds the graph input ``mask`` ``(1, sum F)`` BINARY and a ``MaskSplit`` node.
    """

    def __init__(self, layer_names: list[str], prunable: list[str]):
        super().__init__()
        self.layer_names, self.prunable = layer_names, prunable

    def apply(self, model):
        layers = layer_map(model, self.layer_names)
        targets = [layers[name] for name in self.prunable]
        filters, mask_outs = [], []
        for name, node in zip(self.prunable, targets):
            inst = getCustomOp(node)
            if inst.get_nodeattr("noActivation") or inst.get_nodeattr("ActVal") != 0 or \
                    inst.get_output_datatype().signed():
                raise UnsupportedModel(
                    f"layer {name}: a prunable layer needs an unsigned activation "
                    f"(QuantReLU) so that a disabled filter outputs 0; got output "
                    f"{inst.get_output_datatype().name}, ActVal={inst.get_nodeattr('ActVal')}")
            in_shape = model.get_tensor_shape(node.input[0])
            mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
            ch = mw if len(in_shape) == 2 else _in_channels(model, node, mw)
            kk = mw // ch
            if filters and ch != filters[-1]:
                raise UnsupportedModel(f"layer {name}: {ch} input channels but the previous "
                                       f"prunable layer has {filters[-1]} filters")
            node.op_type = "MaskedMVAU"
            node.attribute.append(helper.make_attribute("KK", int(kk)))
            node.attribute.append(helper.make_attribute("layerName", name))
            out = model.make_new_valueinfo_name()
            model.set_tensor_shape(out, [1, mh + ch], TensorProto.FLOAT)
            model.set_tensor_datatype(out, DataType["BINARY"])
            if len(node.input) != MASK_INPUT:
                raise UnsupportedModel(f"layer {name}: MVAU without thresholds")
            node.input.append(out)  # becomes input index MASK_INPUT
            mask_outs.append(out)
            filters.append(mh)
            if len(filters) == 1:
                first_channels = ch
        inp = helper.make_tensor_value_info(MASK_NAME, TensorProto.FLOAT, [1, sum(filters)])
        model.graph.input.append(inp)
        model.set_tensor_datatype(MASK_NAME, DataType["BINARY"])
        split = helper.make_node("MaskSplit", [MASK_NAME], mask_outs, domain=HW_DOMAIN,
                                 backend="fpgadataflow", filters=filters,
                                 firstChannels=int(first_channels), name="MaskSplit_0")
        model.graph.node.insert(list(model.graph.node).index(targets[0]), split)
        return model, False


def _in_channels(model: ModelWrapper, node, mw: int) -> int:
    """Channels of the first prunable layer's input: last dim of the im2col producer's input."""
    producer = model.find_producer(node.input[0])
    if producer is None:
        return mw
    return int(model.get_tensor_shape(producer.input[0])[-1])


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class ApplyFolding(Transformation):
    """Set PE/SIMD of named layers; non-dividing values raise naming layer and value."""

    def __init__(self, layer_names: list[str], folding: dict[str, dict[str, int]]):
        super().__init__()
        self.layer_names, self.folding = layer_names, folding

    def apply(self, model):
        layers = layer_map(model, self.layer_names)
        by_node = {n.name: n for n in model.graph.node}
        for key, fold in self.folding.items():
            node = layers.get(key) or by_node.get(key)
            if node is None:
                continue  # layer of the other stage
            inst = getCustomOp(node)
            for attr, value in fold.items():
                inst.set_nodeattr(attr, int(value))
            check_folding(key, inst)
        return model, False


def folding_targets(model: ModelWrapper, layer_names: list[str]) -> set[str]:
    """The names a board ``folding`` key can match in a stage graph (see
    :class:`ApplyFolding`): its matrix-vector layers, by layer name or FINN node name (the
    window and padding nodes follow their layer's SIMD, see :class:`MatchWindowSIMD`)."""
    layers = layer_map(model, layer_names)
    return set(layers) | {n.name for n in layers.values()}


def check_folding_keys(folding: dict, targets: set[str], layer_names: list[str],
                       board_file: str) -> None:
    """Every board ``folding`` key names a layer or node of some stage (``targets``: of
    all stages together), else a ValueError naming the keys and the layer names."""
    unknown = sorted(set(folding) - targets)
    if unknown:
        raise ValueError(f"board file {board_file}: folding keys {unknown} match no layer; "
                         f"layer names are {layer_names} (or their FINN node names, "
                         "e.g. MVAU_hls_0)")


def check_folding(name: str, inst) -> None:
    """PE | MH and SIMD | MW (SIMD | CH for masked layers), else a clear error."""
    mh, mw = inst.get_nodeattr("MH"), inst.get_nodeattr("MW")
    pe, simd = inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD")
    width = inst.channels if base_op_type(inst.onnx_node) == "MaskedMVAU" else mw
    if pe < 1 or mh % pe:
        raise UnsupportedModel(f"layer {name}: PE={pe} does not divide MH={mh} "
                               f"(valid: {divisors(mh)})")
    if simd < 1 or width % simd:
        what = "input channels CH" if width != mw else "MW"
        raise UnsupportedModel(f"layer {name}: SIMD={simd} does not divide {what}={width} "
                               f"(valid: {divisors(width)})")


def expected_masked_cycles(mh: int, ch: int, kk: int, pe: int, simd: int, keep: float,
                           input_keep: float | None) -> int:
    """Per-pixel cycles of a MaskedMVAU at the table budget ``keep``: whole PE groups kept,
    its enabled input channels (``input_keep`` of them, the previous layer's budget; None:
    inputs not masked) in the fewest SIMD blocks (the tables' block constraint), so every
    mask of a table costs what contiguous enabled lanes cost."""
    from dyfip.kernels import Folding, masked_mvau_cycles
    from dyfip.tables import keep_count

    filters = np.arange(mh) < keep_count(mh, keep, pe) * pe
    channels = (None if input_keep is None
                else np.arange(ch) < max(1, int(np.ceil(input_keep * ch))))
    return masked_mvau_cycles(Folding(mh, kk * ch, pe, simd, kk), filters, channels)


# window feeders of an MVAU and the attribute their SIMD must divide
FEEDERS = {"ConvolutionInputGenerator": "IFMChannels", "FMPadding": "NumChannels"}


def feeders(model: ModelWrapper, node) -> list:
    """The padding / sliding-window nodes streaming into ``node``, nearest first."""
    chain, prod = [], model.find_producer(node.input[0])
    while prod is not None and base_op_type(prod) in FEEDERS:
        chain.append(prod)
        prod = model.find_producer(prod.input[0])
    return chain


def set_feeder_simd(model: ModelWrapper, node, simd: int) -> None:
    """Give ``node``'s feeders the MVAU's SIMD where it divides their channels; a window
    generator then streams ``simd`` channels per cycle (no parallel-window mode, which
    emits a whole K x K window per cycle)."""
    for prod in feeders(model, node):
        inst = getCustomOp(prod)
        if inst.get_nodeattr(FEEDERS[base_op_type(prod)]) % simd == 0:
            inst.set_nodeattr("SIMD", simd)
            if "parallel_window" in inst.get_nodeattr_types():
                inst.set_nodeattr("parallel_window", 0)


def feeder_cycles(model: ModelWrapper, node, simd: int) -> int:
    """FINN's expected cycles of ``node``'s feeders when they take the MVAU's ``simd``."""
    chain = [getCustomOp(p) for p in feeders(model, node)]
    saved = [{a: inst.get_nodeattr(a) for a in ("SIMD", "parallel_window")
              if a in inst.get_nodeattr_types()} for inst in chain]
    set_feeder_simd(model, node, simd)
    cycles = sum(int(inst.get_exp_cycles()) for inst in chain)
    for inst, old in zip(chain, saved):
        for attr, value in old.items():
            inst.set_nodeattr(attr, value)
    return cycles


class FoldMaskedLayers(Transformation):
    """(PE, SIMD) per MaskedMVAU with PE | MH, SIMD | CH and full cycles <= target.

    FINN's SetFolding does not know MaskedMVAU (and may pick a SIMD that divides MW but
    not CH). Among the foldings meeting the target with the fewest multipliers, we pick the
    one with the fewest cycles of the pruned path under a typical mask (``keep``: the
    tables' budget, one for every layer or one per layer), counting the window feeders
    that stream at the same SIMD, then the smallest PE (the finest mask groups): what
    DyFiP's single-image latency depends on.
    ``max_pe`` (0: none) caps PE, i.e. the mask groups: finer masks, maybe more cycles;
    a layer that cannot meet the target under the cap gets its fastest allowed folding.
    ``given``: the board's folding by layer or node name; a layer given only PE (or SIMD)
    gets the best SIMD (PE) for it, one given both is left to :class:`ApplyFolding`.
    """

    def __init__(self, target_cycles: int, keep: float | Sequence[float] = 0.125,
                 given: dict[str, dict[str, int]] | None = None, max_pe: int = 0):
        super().__init__()
        self.target, self.keep, self.given, self.max_pe = target_cycles, keep, given or {}, max_pe

    def apply(self, model):
        from dyfip.tables import layer_budgets

        layers = [n for n in model.graph.node if base_op_type(n) == "MaskedMVAU"]
        keeps = layer_budgets(self.keep, len(layers)) if layers else []  # stage A: none
        input_keep = None  # the first filter-enable layer's inputs are not masked
        for node, keep in zip(layers, keeps):
            inst = getCustomOp(node)
            mh, ch, kk = inst.get_nodeattr("MH"), inst.channels, inst.get_nodeattr("KK")
            fold = self.given.get(inst.get_nodeattr("layerName")) or self.given.get(node.name, {})
            allowed = [(pe, s) for pe in divisors(mh) if not self.max_pe or pe <= self.max_pe
                       for s in divisors(ch)
                       if fold.get("PE", pe) == pe and fold.get("SIMD", s) == s]
            if not {"PE", "SIMD"} <= set(fold) and allowed:  # else ApplyFolding sets / names it
                pixels = inst.pixels()
                options = [(pe, s) for pe, s in allowed
                           if pixels * (mh // pe) * (kk * ch // s) <= self.target]
                if not options:  # the fastest allowed foldings
                    most = max(pe * s for pe, s in allowed)
                    options = [(pe, s) for pe, s in allowed if pe * s == most]
                fewest = min(pe * s for pe, s in options)

                def pruned_path(option, keep=keep, input_keep=input_keep):
                    pe, simd = option
                    return (pixels * expected_masked_cycles(mh, ch, kk, pe, simd, keep,
                                                            input_keep)
                            + feeder_cycles(model, node, simd), pe)

                pe, simd = min(((pe, s) for pe, s in options if pe * s == fewest),
                               key=pruned_path)
                inst.set_nodeattr("PE", pe)
                inst.set_nodeattr("SIMD", simd)
            input_keep = keep
        return model, False


class ToGenericOps(Transformation):
    """Map ``*_hls`` / ``*_rtl`` nodes back to their generic op (PE/SIMD kept), exec_mode=''.

    The generic ops' ``execute_node`` is numpy, so the folded graph runs without Vivado.
    """

    def apply(self, model):
        for node in model.graph.node:
            generic = base_op_type(node)
            if generic != node.op_type:
                node.op_type, node.domain = generic, HW_DOMAIN
            if node.domain == HW_DOMAIN:
                getCustomOp(node).set_nodeattr("exec_mode", "")
        return model, False


def mask_input_length(model: ModelWrapper) -> int | None:
    names = [i.name for i in model.graph.input]
    return int(np.prod(model.get_tensor_shape(MASK_NAME))) if MASK_NAME in names else None


class MatchWindowSIMD(Transformation):
    """Give the padding / sliding-window nodes feeding an MVAU the MVAU's SIMD.

    The window generator then streams one MVAU input word per cycle (no width converter) and
    is no slower than needed; skipped where the SIMD does not divide the channel count.
    """

    def apply(self, model):
        for node in mvau_nodes(model):
            set_feeder_simd(model, node, getCustomOp(node).get_nodeattr("SIMD"))
        return model, False
