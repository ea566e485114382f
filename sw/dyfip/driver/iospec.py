"""Stream formats of the accelerator's IODMAs, in FINN's ``io_shape_dict`` terms.

Each stage of the bitstream is a FINN dataflow partition fed by FINN IODMAs. The driver
settings ``accel/driver.json`` (written next to the bitstream) give per stage the FINN
``io_shape_dict`` fields: ``idma_names``/``odma_names``, ``idt``/``odt`` and the normal,
folded and packed shapes of every input/output. Without it they are derived from
``accel/layers.json``: a stream is folded by the SIMD (inputs) or PE (outputs) of the layer
at its end, and IODMAs are named ``idma0, idma1, ...`` / ``odma0, ...`` in stage order
(stage A: pixels; stage B: then features, mask).

Packing reuses FINN's own runtime (``finn_plus_driver.packing`` on the board,
``finn.util.data_packing`` on the host), as FINN's ``FINNDMAOverlay`` does.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, BundleMismatchError
from .files import read_json

DRIVER_JSON = "driver.json"
BITSTREAM_HINT = ("build the overlay of both stages with 'dyfip build --bitstream' (needs "
                  "Vivado; writes accel/dyfip.bit, .hwh and driver.json), copy the bundle to "
                  "the board ('make deploy'), or use the simulated board (board='sim')")
STAGES = ("stage_a", "stage_b")


@lru_cache(maxsize=None)
def _packing() -> tuple[Any, Any, Any]:
    """(finnpy_to_packed_bytearray, packed_bytearray_to_finnpy, DataType) of FINN's runtime."""
    from qonnx.core.datatype import DataType
    try:
        from finn_plus_driver.packing import (finnpy_to_packed_bytearray,
                                              packed_bytearray_to_finnpy)
    except ImportError:  # host environment: the compiler's copy of the same functions
        from finn.util.data_packing import (finnpy_to_packed_bytearray,
                                            packed_bytearray_to_finnpy)
    return finnpy_to_packed_bytearray, packed_bytearray_to_finnpy, DataType


def bitwidth(datatype: str) -> int:
    return int(_packing()[2][datatype].bitwidth())


def is_datatype(name: str) -> bool:
    """Whether ``name`` is a FINN (QONNX) data type, e.g. ``"UINT4"``."""
    from qonnx.core.datatype import DataType
    try:
        DataType[name]
    except (KeyError, ValueError):  # ValueError: "INT9X", an arbitrary-width name that is not
        return False
    return True


@dataclass(frozen=True)
class Stream:
    """One IODMA stream: ``role`` (pixels / features / mask / output), its DMA and shapes
    for one image (batch dimension 1, as in FINN's io_shape_dict)."""

    role: str
    dma: str
    datatype: str
    shape_normal: tuple[int, ...]
    shape_folded: tuple[int, ...]
    shape_packed: tuple[int, ...]

    def batch(self, shape: tuple[int, ...], n: int) -> tuple[int, ...]:
        return (n, *shape[1:])

    def same_stream(self, other: "Stream") -> bool:
        """The same role, data type and shapes (whatever its DMA is called)."""
        return replace(self, dma=other.dma) == other

    @property
    def bytes_per_image(self) -> int:
        return int(np.prod(self.shape_packed[1:]))

    def pack(self, values: np.ndarray) -> np.ndarray:
        """Integer values ``(N, *normal)`` -> packed bytes ``(N, *packed)`` (uint8)."""
        pack, _, dt = _packing()
        n = values.shape[0]
        folded = np.asarray(values).reshape(self.batch(self.shape_folded, n))
        dtype = dt[self.datatype]
        if self.datatype == "UINT8":
            folded = folded.astype(np.uint8)  # FINN's fast whole-byte path
        elif folded.dtype.kind not in "iu" or bitwidth(self.datatype) % 8:
            folded = folded.astype(np.float32)
        return np.ascontiguousarray(pack(folded, dtype, reverse_endian=True, reverse_inner=True))

    def unpack(self, packed: np.ndarray, n: int) -> np.ndarray:
        """Packed bytes of ``n`` images -> integer values ``(n, *normal)`` (int64)."""
        _, unpack, dt = _packing()
        data = np.asarray(packed, dtype=np.uint8).reshape(self.batch(self.shape_packed, n))
        folded = unpack(data, dt[self.datatype], self.batch(self.shape_folded, n),
                        reverse_endian=True, reverse_inner=True)
        return np.asarray(folded).reshape(self.batch(self.shape_normal, n)).astype(np.int64)

    def to_json(self) -> dict:
        return {"role": self.role, "dma": self.dma, "datatype": self.datatype,
                "shape_normal": list(self.shape_normal), "shape_folded": list(self.shape_folded),
                "shape_packed": list(self.shape_packed)}


@dataclass(frozen=True)
class StageIO:
    """The IODMA streams of one stage: inputs by role, one output."""

    name: str
    inputs: dict[str, Stream]
    output: Stream

    def io_shape_dict(self) -> dict:
        """FINN's ``io_shape_dict`` (as in settings.json) for this stage."""
        ins, out = list(self.inputs.values()), self.output
        return {"idt": [f"DataType['{s.datatype}']" for s in ins],
                "odt": [f"DataType['{out.datatype}']"],
                "ishape_normal": [list(s.shape_normal) for s in ins],
                "ishape_folded": [list(s.shape_folded) for s in ins],
                "ishape_packed": [list(s.shape_packed) for s in ins],
                "oshape_normal": [list(out.shape_normal)],
                "oshape_folded": [list(out.shape_folded)],
                "oshape_packed": [list(out.shape_packed)],
                "idma_names": [s.dma for s in ins], "odma_names": [out.dma],
                "num_inputs": len(ins), "num_outputs": 1}


def _stream(role: str, dma: str, tensor: dict, fold: int) -> Stream:
    shape = tuple(int(v) for v in tensor["shape"])
    last = shape[-1]
    if fold < 1 or last % fold:
        fold = last
    bits = bitwidth(tensor["datatype"])
    folded = (*shape[:-1], last // fold, fold)
    packed = (*shape[:-1], last // fold, -(-fold * bits // 8))
    return Stream(role, dma, tensor["datatype"], shape, folded, packed)


def derive_io(description: dict) -> dict[str, StageIO]:
    """Stage streams from ``layers.json`` (see the module docstring)."""
    out: dict[str, StageIO] = {}
    n_in = n_out = 0
    for name in STAGES:
        spec = description["stages"][name]
        layers = spec["layers"]
        inputs = {}
        for tensor in sorted(spec["inputs"], key=lambda t: t["role"] == "mask"):
            consumer = next((la for la in layers if tensor["tensor"] in la["inputs"]), {})
            inputs[tensor["role"]] = _stream(tensor["role"], f"idma{n_in}", tensor,
                                             int(consumer.get("SIMD", 0)))
            n_in += 1
        otensor = spec["outputs"][0]
        producer = next((la for la in layers if otensor["tensor"] in la["outputs"]), {})
        output = _stream("output", f"odma{n_out}", otensor,
                         int(producer.get("PE", producer.get("SIMD", 0))))
        n_out += 1
        out[name] = StageIO(name, inputs, output)
    return out


def load_io(accel_dir: str | Path, description: dict) -> dict[str, StageIO]:
    """:func:`derive_io`, with the IODMA names of ``accel/driver.json`` if the bitstream
    build wrote one; its streams must be the derived ones (else the bitstream was built
    for another accelerator, or the file was edited)."""
    derived = derive_io(description)
    path = Path(accel_dir) / DRIVER_JSON
    if not path.exists():
        return derived
    settings = read_json(path, BITSTREAM_HINT)
    try:
        built = {name: StageIO(name, {s["role"]: _from_json(s) for s in st["inputs"]},
                               _from_json(st["output"]))
                 for name, st in settings["stages"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BundleError(f"{path} is not a DyFiP driver settings file "
                          f"({type(exc).__name__}: {exc}): {BITSTREAM_HINT}") from exc
    for name, stage in derived.items():
        want = {**stage.inputs, "output": stage.output}
        have = {**built[name].inputs, "output": built[name].output} if name in built else {}
        for role in sorted(set(want) | set(have)):
            if role not in have or role not in want or not have[role].same_stream(want[role]):
                raise BundleMismatchError(
                    f"{path}: the {role} stream of {name} is {have.get(role)}, the "
                    f"accelerator's accel/layers.json gives {want.get(role)}: rebuild the "
                    f"bitstream or deploy the matching bundle")
    return built


def _from_json(s: dict) -> Stream:
    return Stream(s["role"], s["dma"], s["datatype"], tuple(s["shape_normal"]),
                  tuple(s["shape_folded"]), tuple(s["shape_packed"]))


def driver_settings(io: dict[str, StageIO], design_digest: str, model_hash: str,
                    clk_ns: float) -> dict:
    """Content of ``accel/driver.json`` (what a bitstream build should write)."""
    return {"version": 1, "design_digest": design_digest, "model_hash": model_hash,
            "clk_ns": clk_ns,
            "stages": {name: {"inputs": [s.to_json() for s in st.inputs.values()],
                              "output": st.output.to_json(), "io_shape_dict":
                              st.io_shape_dict()} for name, st in io.items()}}
