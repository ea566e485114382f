"""Code generation for the RTL filter-enable MVAU (``hw/dyfip_hw/rtl/masked_mvau.sv``).

``generate_masked_mvau_rtl(out_dir, params, weights, thresholds)`` writes, FINN-style, a
Verilog top level with FINN's port names (``ap_clk``, ``ap_rst_n``, ``in0_V_*`` data,
``in1_V_*`` mask, ``out0_V_*``), the ``$readmemh`` files of weights and thresholds, and copies
of the SystemVerilog sources, and returns the HDL files in compile order. The stream packing
helpers (``input_words``, ``mask_words``, ``unpack_outputs``) define the word formats used by
the testbenches and the driver: element ``i`` of a word sits in bits ``[i*bits, (i+1)*bits)``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dyfip.dataflow import mask_word_bits
from dyfip.kernels import Folding

RTL_DIR = Path(__file__).resolve().parent / "rtl"  # shipped in the package, like FINN's finn-rtllib
TEMPLATE = RTL_DIR / "templates" / "masked_mvau_wrapper.v"
CORE_SOURCES = ("dyfip_fifo.sv", "masked_mvau.sv")  # compile order


def _pad8(bits: int) -> int:
    return (bits + 7) // 8 * 8


@dataclass(frozen=True)
class MvauRtlParams:
    """Node-attribute-like parameters of one masked MVAU instance.

    ``accu_bits=None`` lets :func:`resolve_params` pick the smallest exact width.
    Without thresholds (``use_thresholds=False``) the output is the raw accumulator.
    """

    pe: int
    simd: int
    mw: int
    mh: int
    kk: int = 1
    weight_bits: int = 4
    act_bits: int = 4
    out_bits: int = 4
    num_pixels: int = 1
    accu_bits: int | None = None
    use_thresholds: bool = True
    out_fifo_depth: int = 4
    name: str = "masked_mvau_0"

    def __post_init__(self) -> None:
        Folding(self.mh, self.mw, self.pe, self.simd, self.kk)  # raises on non-dividing folding
        if self.num_pixels < 1 or self.out_fifo_depth < 2:
            raise ValueError("num_pixels must be >= 1 and out_fifo_depth >= 2")
        if not self.name.isidentifier():
            raise ValueError(f"module name {self.name!r} is not a Verilog identifier")

    @property
    def fold(self) -> Folding:
        return Folding(self.mh, self.mw, self.pe, self.simd, self.kk)

    @property
    def ch(self) -> int:
        return self.mw // self.kk

    @property
    def n_thresholds(self) -> int:
        return 2 ** self.out_bits - 1 if self.use_thresholds else 0

    @property
    def in_stream_width(self) -> int:
        return _pad8(self.simd * self.act_bits)

    @property
    def mask_stream_width(self) -> int:
        return _pad8(self.mh + self.ch)

    @property
    def out_stream_width(self) -> int:
        return _pad8(self.pe * self.out_bits)


# ---- numeric ranges --------------------------------------------------------------------------
def accumulator_range(weights: np.ndarray, act_bits: int) -> tuple[int, int]:
    """Smallest and largest accumulator value over all filters and unsigned inputs."""
    w = np.asarray(weights, dtype=np.int64)
    xmax = 2 ** act_bits - 1
    return int(np.minimum(w, 0).sum(0).min()) * xmax, int(np.maximum(w, 0).sum(0).max()) * xmax


def signed_bits(lo: int, hi: int) -> int:
    """Two's complement width holding every integer in ``[lo, hi]``."""
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return bits


def clip_thresholds(thresholds: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Clip to ``[lo, hi + 1]``: exact for accumulators in ``[lo, hi]`` (never / always reached)."""
    return np.clip(np.asarray(thresholds, dtype=np.int64), lo, hi + 1)


def resolve_params(params: MvauRtlParams, weights: np.ndarray,
                   thresholds: np.ndarray | None) -> tuple[MvauRtlParams, np.ndarray | None]:
    """Check shapes/ranges, pick ``accu_bits`` if unset; returns (params, clipped thresholds)."""
    w = np.asarray(weights)
    if w.shape != (params.mw, params.mh):
        raise ValueError(f"weights must be (MW, MH) = {(params.mw, params.mh)}; got {w.shape}")
    wlo, whi = -(2 ** (params.weight_bits - 1)), 2 ** (params.weight_bits - 1) - 1
    if w.min(initial=0) < wlo or w.max(initial=0) > whi:
        raise ValueError(f"weights outside the signed {params.weight_bits}-bit range")
    lo, hi = accumulator_range(w, params.act_bits)
    if params.use_thresholds:
        if thresholds is None:
            raise ValueError("use_thresholds=True needs a thresholds array")
        t = np.asarray(thresholds)
        if t.shape != (params.mh, params.n_thresholds):
            raise ValueError(f"thresholds must be (MH, 2^out_bits-1) = "
                             f"{(params.mh, params.n_thresholds)}; got {t.shape}")
        t = clip_thresholds(t, lo, hi)
        need = signed_bits(lo, hi + 1)
    else:
        t = None
        need = signed_bits(lo, hi)
    accu = params.accu_bits or need
    if accu < need:
        raise ValueError(f"accu_bits={accu} < {need} bits needed for exact accumulation")
    if not params.use_thresholds:
        params = replace(params, out_bits=accu)
    return replace(params, accu_bits=accu), t


# ---- word packing ------------------------------------------------------------------------
def pack_words(values: np.ndarray, bits: int) -> list[int]:
    """(..., n) integers -> one int per row, element i in bits [i*bits, (i+1)*bits)."""
    v = np.asarray(values, dtype=np.int64)
    rows = (v & ((1 << bits) - 1)).reshape(-1, v.shape[-1])
    return [sum(int(e) << (i * bits) for i, e in enumerate(row)) for row in rows]


def unpack_words(words: list[int], n: int, bits: int, signed: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_words`: -> (len(words), n) int64."""
    mask = (1 << bits) - 1
    out = np.array([[(w >> (i * bits)) & mask for i in range(n)] for w in words],
                   dtype=np.int64).reshape(len(words), n)
    if signed:
        out = np.where(out >= 1 << (bits - 1), out - (1 << bits), out)
    return out


def input_words(x: np.ndarray, p: MvauRtlParams) -> list[int]:
    """(N, P, MW) activations -> input stream words (SIMD per word, pixel after pixel)."""
    x = np.asarray(x)
    return pack_words(x.reshape(-1, p.simd), p.act_bits)


def mask_words(mask: np.ndarray, p: MvauRtlParams) -> list[int]:
    """(N, MH + CH) 0/1 -> one mask word per image; bit i = element i of [filters | channels]."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape[1] != p.mh + p.ch:
        raise ValueError(f"mask must be (N, MH + CH) = (N, {p.mh + p.ch}); got {mask.shape}")
    return pack_words(mask, 1)


def unpack_outputs(words: list[int], p: MvauRtlParams, n_images: int) -> np.ndarray:
    """Output stream words -> (N, P, MH) (signed when thresholds are off)."""
    y = unpack_words(words, p.pe, p.out_bits, signed=not p.use_thresholds)
    return y.reshape(n_images, p.num_pixels, p.mh)


def weight_mem_lines(weights: np.ndarray, p: MvauRtlParams) -> list[str]:
    """$readmemh lines: address nf*SF + sf, element (pe, simd) = W[sf*SIMD + simd, nf*PE + pe]."""
    nf, sf = p.fold.neuron_folds, p.fold.synapse_folds
    w = np.asarray(weights, dtype=np.int64).reshape(sf, p.simd, nf, p.pe)
    w = w.transpose(2, 0, 3, 1).reshape(nf * sf, p.pe * p.simd)  # (nf, sf) x (pe, simd)
    digits = (p.pe * p.simd * p.weight_bits + 3) // 4
    return [f"{v:0{digits}x}" for v in pack_words(w, p.weight_bits)]


def threshold_mem_lines(thresholds: np.ndarray, p: MvauRtlParams) -> list[str]:
    """$readmemh lines: address nf, element (pe, t) = thresholds[nf*PE + pe, t]."""
    t = np.asarray(thresholds, dtype=np.int64).reshape(p.fold.neuron_folds, -1)
    digits = (t.shape[1] * p.accu_bits + 3) // 4
    return [f"{v:0{digits}x}" for v in pack_words(t, p.accu_bits)]


# ---- file generation -----------------------------------------------------------------------
def _write_if_changed(path: Path, text: str) -> None:
    """Keep timestamps (and so warm simulator builds) when the content is unchanged."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def mem_files(out_dir: Path | str, name: str) -> tuple[Path, Path]:
    """Paths of the weight and threshold memory files of instance ``name``."""
    out_dir = Path(out_dir)
    return out_dir / f"{name}_weights.dat", out_dir / f"{name}_thresholds.dat"


def rtl_file_list(out_dir: Path | str, name: str) -> list[Path]:
    """HDL files of instance ``name`` in compile order, wrapper (top level ``name``) last."""
    out_dir = Path(out_dir)
    return [out_dir / f for f in CORE_SOURCES] + [out_dir / f"{name}.v"]


def code_gen_dict(p: MvauRtlParams, weight_file: str, thresh_file: str) -> dict[str, str]:
    """Template substitutions (FINN's ``$KEY$`` convention); ``p`` must be resolved."""
    return {
        "$MODULE_NAME$": p.name, "$PE$": str(p.pe), "$SIMD$": str(p.simd), "$MW$": str(p.mw),
        "$MH$": str(p.mh), "$KK$": str(p.kk), "$WEIGHT_WIDTH$": str(p.weight_bits),
        "$ACT_WIDTH$": str(p.act_bits), "$OUT_WIDTH$": str(p.out_bits),
        "$ACCU_WIDTH$": str(p.accu_bits), "$NUM_PIXELS$": str(p.num_pixels),
        "$USE_THRESHOLDS$": str(int(p.use_thresholds)),
        "$OUT_FIFO_DEPTH$": str(p.out_fifo_depth), "$WEIGHT_FILE$": weight_file,
        "$THRESH_FILE$": thresh_file, "$IN_STREAM_WIDTH$": str(p.in_stream_width),
        "$MASK_STREAM_WIDTH$": str(p.mask_stream_width),
        "$OUT_STREAM_WIDTH$": str(p.out_stream_width),
    }


def generate_masked_mvau_rtl(out_dir: Path | str, params: MvauRtlParams, weights: np.ndarray,
                             thresholds: np.ndarray | None,
                             mem_prefix: str | None = None) -> list[Path]:
    """Write wrapper, memory files and core sources into ``out_dir``; return the HDL files.

    ``weights`` (MW, MH) signed ints, ``thresholds`` (MH, 2^out_bits - 1) ints (ascending per
    filter; clipped to the accumulator range) or None with ``use_thresholds=False``.
    ``mem_prefix`` is how the wrapper names the memory files: the absolute ``out_dir`` by
    default (simulators); pass ``"./"`` for Vivado projects that add the .dat files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p, thr = resolve_params(params, weights, thresholds)
    wfile, tfile = mem_files(out_dir, p.name)
    _write_if_changed(wfile, "\n".join(weight_mem_lines(weights, p)) + "\n")
    if thr is not None:
        _write_if_changed(tfile, "\n".join(threshold_mem_lines(thr, p)) + "\n")
    prefix = f"{out_dir.resolve()}/" if mem_prefix is None else mem_prefix
    text = TEMPLATE.read_text()
    subst = code_gen_dict(p, prefix + wfile.name, prefix + tfile.name if thr is not None else "")
    for key, value in subst.items():
        text = text.replace(key, value)
    _write_if_changed(out_dir / f"{p.name}.v", text)
    for src in CORE_SOURCES:
        _write_if_changed(out_dir / src, (RTL_DIR / src).read_text())
    return rtl_file_list(out_dir, p.name)


def mask_split_verilog(top: str, filters: list[int], first_channels: int) -> str:
    """``MaskSplit``'s HDL: one stage-wide filter-enable word in, one word per filter-enable
    layer out (its filters' bits, then its input channels': the previous layer's filters,
    all ones for the first), each registered and byte-padded. Plain Verilog-2001: Vivado's
    block design takes no SystemVerilog top for a module reference."""
    ports = [f"  input  wire [{_pad8(sum(filters)) - 1}:0] in0_V_TDATA,",
             "  input  wire in0_V_TVALID,", "  output wire in0_V_TREADY,"]
    if _pad8(sum(filters)) > sum(filters):  # the byte padding of the input word is unread
        ports[0] = ("  /* verilator lint_off UNUSEDSIGNAL */\n" + ports[0]
                    + "\n  /* verilator lint_on UNUSEDSIGNAL */")
    decls, body, lo = [], [], 0
    for i, (f, bits) in enumerate(zip(filters, mask_word_bits(filters, first_channels))):
        w = _pad8(bits)
        ports += [f"  output wire [{w - 1}:0] out{i}_V_TDATA,",
                  f"  output wire out{i}_V_TVALID,", f"  input  wire out{i}_V_TREADY,"]
        chan = (f"{{{first_channels}{{1'b1}}}}" if i == 0
                else f"in0_V_TDATA[{lo - 1}:{lo - filters[i - 1]}]")
        word = f"{chan}, in0_V_TDATA[{lo + f - 1}:{lo}]"
        if w > bits:
            word = f"{{{w - bits}{{1'b0}}}}, {word}"
        decls.append(f"  reg v{i}; reg [{w - 1}:0] d{i};")
        body += [f"  assign out{i}_V_TDATA = d{i}; assign out{i}_V_TVALID = v{i};",
                 "  always @(posedge ap_clk) begin",
                 f"    if (!ap_rst_n) v{i} <= 1'b0;",
                 f"    else if (in0_V_TVALID && in0_V_TREADY) begin",
                 f"      v{i} <= 1'b1; d{i} <= {{{word}}};",
                 "    end",
                 f"    else if (out{i}_V_TREADY) v{i} <= 1'b0;",
                 "  end"]
        lo += f
    ports[-1] = ports[-1].rstrip(",")
    busy = " | ".join(f"v{i}" for i in range(len(filters)))
    busifs = ":".join(["in0_V", *(f"out{i}_V" for i in range(len(filters)))])
    clock = ['  (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 ap_clk CLK" *)',
             f'  (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF {busifs}, '
             'ASSOCIATED_RESET ap_rst_n" *)', "  input  wire ap_clk,",
             '  (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)', "  input  wire ap_rst_n,"]
    return "\n".join([f"module {top} (", *clock, *ports, ");", *decls,
                      f"  assign in0_V_TREADY = !({busy});", *body, "endmodule", ""])
