"""Boot finn-plus 1.6.1 as a library, with or without Vivado.

finn-plus expects to be started through its ``finn`` CLI, which refuses to run without
``XILINX_VIVADO``. Everything DyFiP needs before synthesis (QONNX->FINN, streamlining,
convert_to_hw, partitioning, specialisation, folding, estimates, HLS/RTL code generation)
works as a library once:

1. ``FINN_BUILD_DIR`` exists and the settings singleton is initialised
   (``finn.util.settings.initialize_dummy_settings``);
2. ``FINN_RTLLIB`` / ``FINN_CUSTOM_HLS`` are exported from those settings;
3. *import guard*: ``finn.builder.build_dataflow_steps`` does ``from finn.xsi import
   SimEngine``, which probes Vivado at import time. Without Vivado we bind a placeholder that
   raises :class:`ToolMissing` only when an RTL simulation is actually attempted.

Call :func:`setup` before importing any other ``finn`` module; it is idempotent.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: Xilinx tool versions finn-plus 1.6.1 supports (its METADATA: "2022.2 or 2024.2").
SUPPORTED_VIVADO = ("2022.2", "2024.2")

_READY = False


class ToolMissing(RuntimeError):
    """A step needs a Xilinx tool that is not installed; the message names both."""

    def __init__(self, tool: str, step: str, outputs: str = "the build folder"):
        super().__init__(
            f"step '{step}' needs {tool}, which was not found (set XILINX_VIVADO / "
            f"XILINX_VITIS / XILINX_HLS by sourcing the settings64.sh of Vivado "
            f"{' or '.join(SUPPORTED_VIVADO)}). Every step before it has run; its outputs "
            f"are in {outputs}.")
        self.tool, self.step = tool, step


def vivado_root() -> str | None:
    """``XILINX_VIVADO`` if it points to an installation with a ``vivado`` binary."""
    root = os.environ.get("XILINX_VIVADO")
    if root and (Path(root) / "bin" / "vivado").exists():
        return root
    return None


def missing_tools() -> list[str]:
    """Xilinx tools the bitstream flow needs and this machine lacks."""
    missing = []
    if vivado_root() is None:
        missing.append("Vivado (XILINX_VIVADO)")
    if not (os.environ.get("XILINX_HLS") or os.environ.get("XILINX_VITIS")
            or shutil.which("vitis_hls") or shutil.which("vitis-run")):
        missing.append("Vitis HLS (XILINX_HLS or XILINX_VITIS)")
    return missing


class _NoSimEngine:
    """Placeholder for ``finn.xsi.SimEngine`` when Vivado (xsim) is absent."""

    def __init__(self, *args, **kwargs):
        raise ToolMissing("Vivado xsim (finn_xsi)", "rtlsim")


def setup(build_dir: str | Path | None = None) -> Path:
    """Initialise FINN settings and the xsi import guard; return ``FINN_BUILD_DIR``."""
    global _READY
    if build_dir is None:
        build_dir = os.environ.get("FINN_BUILD_DIR") or Path(tempfile.gettempdir()) / "dyfip_finn"
    build_dir = Path(build_dir).absolute()
    build_dir.mkdir(parents=True, exist_ok=True)
    if _READY:
        return Path(os.environ["FINN_BUILD_DIR"])
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    from finn.util.settings import get_settings, initialize_dummy_settings

    initialize_dummy_settings()
    settings = get_settings()
    os.environ.setdefault("FINN_RTLLIB", str(settings.finn_rtllib))
    os.environ.setdefault("FINN_CUSTOM_HLS", str(settings.finn_custom_hls))
    if vivado_root() is None:
        import finn.xsi as xsi

        xsi.SimEngine = _NoSimEngine  # import guard: no Vivado probe at import time
    import dyfip_hw.ops  # noqa: F401  (registers MaskedMVAU / MaskSplit with FINN)

    _READY = True
    return build_dir
