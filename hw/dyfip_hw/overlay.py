"""One overlay for both stages, the bitstream the host driver loads.

The two folded dataflow graphs are merged side by side into one FINN graph (inputs: stage
A's pixels, stage B's features and mask; outputs: stage A's features, the logits), so FINN's
bitstream steps make one stitched IP, one block design with an IODMA per input and output,
and one bitstream. :func:`write_overlay` puts it where :class:`dyfip.driver.DyFiP` looks:
``accel/dyfip.bit`` + ``accel/dyfip.hwh`` and ``accel/driver.json``, whose IODMA names are
the ones FINN gave each graph input and output (checked against the driver's own streams).
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import GiveUniqueNodeNames

from dyfip.bundle import read_json, write_json
from dyfip.dataflow import LAYERS_JSON
from dyfip.driver.deployment import design_digest
from dyfip.driver.iospec import DRIVER_JSON, STAGES, StageIO, Stream, derive_io, driver_settings

OVERLAY = "overlay"  # its build folder: hw_build/overlay/finn
BITFILE, HWH = "dyfip.bit", "dyfip.hwh"
FINN_BITFILE = "finn-accel"  # <output_dir>/bitfile/finn-accel.{bit,hwh} of FINN's Zynq flow


def merge_stages(graphs: dict[str, ModelWrapper]) -> ModelWrapper:
    """Stage A and stage B side by side in one graph: tensors prefixed by their stage, node
    names made unique; graph inputs and outputs in stage order (the driver's streams)."""
    parts = [prefixed(graphs[name], f"{name}_") for name in STAGES]
    merged = parts[0]
    for part in parts[1:]:
        for field in ("node", "input", "output", "initializer", "value_info",
                      "quantization_annotation"):
            getattr(merged.graph, field).extend(getattr(part.graph, field))
    return merged.transform(GiveUniqueNodeNames())


def prefixed(model: ModelWrapper, prefix: str) -> ModelWrapper:
    """A copy of ``model`` with ``prefix`` before every tensor name."""
    model = ModelWrapper(copy.deepcopy(model.model))
    g = model.graph
    names = {t for node in g.node for t in (*node.input, *node.output) if t}
    names |= {v.name for v in (*g.input, *g.output, *g.initializer, *g.value_info)}
    for name in sorted(names):
        model.rename_tensor(name, prefix + name)
    return model


def overlay_io(io: dict[str, StageIO], shapes: dict) -> dict[str, StageIO]:
    """The driver's streams with the IODMA names of the built overlay. ``shapes`` is FINN's
    ``get_driver_shapes`` of it: per graph input / output, in the order of
    :func:`merge_stages`, its ``idma_names`` / ``odma_names`` and folded / packed shapes."""
    inputs = [s for name in STAGES for s in io[name].inputs.values()]
    outputs = [io[name].output for name in STAGES]
    if len(shapes["idma_names"]) != len(inputs) or len(shapes["odma_names"]) != len(outputs):
        raise RuntimeError(f"the overlay has {len(shapes['idma_names'])} input and "
                           f"{len(shapes['odma_names'])} output DMAs, the driver expects "
                           f"{len(inputs)} and {len(outputs)}")
    dma = {}
    for kind, streams in (("i", inputs), ("o", outputs)):
        for i, s in enumerate(streams):
            built = tuple(shapes[f"{kind}shape_folded"][i]), tuple(shapes[f"{kind}shape_packed"][i])
            if built != (s.shape_folded, s.shape_packed):
                raise RuntimeError(f"the overlay's {s.role} stream is folded / packed as "
                                   f"{built}, the driver's as {(s.shape_folded, s.shape_packed)}")
            dma[id(s)] = shapes[f"{kind}dma_names"][i]

    def renamed(s: Stream) -> Stream:
        return Stream(s.role, dma[id(s)], s.datatype, s.shape_normal, s.shape_folded,
                      s.shape_packed)

    return {name: StageIO(name, {r: renamed(s) for r, s in st.inputs.items()},
                          renamed(st.output)) for name, st in io.items()}


def write_overlay(finn_out: Path, accel_dir: Path, shapes: dict, model_hash: str,
                  clk_ns: float) -> Path:
    """Copy the overlay FINN built into ``finn_out`` to ``accel_dir`` (bitstream, hardware
    handoff) with its ``driver.json``; ``shapes``: FINN's ``get_driver_shapes`` of the built
    model. Returns the bitstream path."""
    io = overlay_io(derive_io(read_json(accel_dir / LAYERS_JSON)), shapes)
    sources = {name: finn_out / "bitfile" / f"{FINN_BITFILE}{Path(name).suffix}"
               for name in (BITFILE, HWH)}
    if missing := [str(src) for src in sources.values() if not src.is_file()]:
        raise FileNotFoundError(f"{', '.join(missing)} not found: FINN's synthesize_bitfile "
                                "step did not write them (see its log in the build folder)")
    for name, src in sources.items():
        shutil.copyfile(src, accel_dir / f"{name}.tmp")
    write_json(accel_dir / DRIVER_JSON,
               driver_settings(io, design_digest(accel_dir), model_hash, clk_ns))
    for name in (HWH, BITFILE):  # the bitstream last: the driver looks for it
        (accel_dir / f"{name}.tmp").replace(accel_dir / name)
    return accel_dir / BITFILE
