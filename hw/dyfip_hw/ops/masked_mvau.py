"""The filter-enable MVAU as a FINN op: ``MaskedMVAU`` and its RTL specialisation."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType

from dyfip.kernels import Folding, masked_mvau, masked_mvau_cycles
from finn.custom_op.fpgadataflow import register_custom_op
from finn.custom_op.fpgadataflow.hls.matrixvectoractivation_hls import MVAU_hls
from finn.custom_op.fpgadataflow.matrixvectoractivation import MVAU
from finn.custom_op.fpgadataflow.rtl import register_custom_op as register_rtl_op
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend

from .ipi import StreamsByInput, ipi_commands

MASK_INPUT = 3  # ONNX input index of the mask stream: [data, weights, thresholds, mask]


@register_custom_op
class MaskedMVAU(MVAU):
    """MVAU with integrated thresholds and a per-image ``[filters | channels]`` enable word.

    Disabled filters output exact zeros (``ActVal`` must be 0, i.e. unsigned outputs where
    integer 0 is the real 0); disabled input channels are skipped. Semantics:
    :func:`dyfip.kernels.masked_mvau`; cycles: :func:`dyfip.kernels.masked_mvau_cycles`.
    """

    def get_nodeattr_types(self):
        attrs = super().get_nodeattr_types()
        attrs.update({
            "KK": ("i", False, 1),  # kernel positions: MW = KK * CH, channel fastest
            "layerName": ("s", False, ""),  # PyTorch name of the layer (e.g. stage_b.0)
        })
        return attrs

    # -- geometry ---------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.get_nodeattr("MW") // self.get_nodeattr("KK")

    @property
    def mask_bits(self) -> int:
        return self.get_nodeattr("MH") + self.channels

    def folding(self) -> Folding:
        return Folding(mh=self.get_nodeattr("MH"), mw=self.get_nodeattr("MW"),
                       pe=self.get_nodeattr("PE"), simd=self.get_nodeattr("SIMD"),
                       kk=self.get_nodeattr("KK"))

    def pixels(self) -> int:
        return int(np.prod(self.get_nodeattr("numInputVectors")))

    def get_input_datatype(self, ind=0):
        return DataType["BINARY"] if ind == MASK_INPUT else super().get_input_datatype(ind)

    def get_instream_width(self, ind=0):
        return self.mask_bits if ind == MASK_INPUT else super().get_instream_width(ind)

    def get_normal_input_shape(self, ind=0):
        return (1, self.mask_bits) if ind == MASK_INPUT else super().get_normal_input_shape(ind)

    def get_folded_input_shape(self, ind=0):
        return (1, 1, self.mask_bits) if ind == MASK_INPUT else super().get_folded_input_shape(ind)

    # -- execution and cost -----------------------------------------------------------
    def execute_node(self, context, graph):
        node = self.onnx_node
        if self.get_nodeattr("noActivation") or self.get_nodeattr("ActVal") != 0:
            raise ValueError(f"{node.name}: MaskedMVAU needs integrated thresholds with "
                             "ActVal=0 (unsigned outputs)")
        mh, mw = self.get_nodeattr("MH"), self.get_nodeattr("MW")
        x = context[node.input[0]].reshape(1, self.pixels(), mw)
        thresholds = np.asarray(context[node.input[2]])
        thresholds = np.broadcast_to(thresholds, (mh, thresholds.shape[-1]))
        mask = np.asarray(context[node.input[MASK_INPUT]]).reshape(1, -1)
        if mask.shape[1] != self.mask_bits:
            raise ValueError(f"{node.name}: mask of {mask.shape[1]} bits, expected "
                             f"MH + CH = {mh} + {self.channels}")
        out = masked_mvau(x, context[node.input[1]], thresholds, mask, self.get_nodeattr("KK"))
        context[node.output[0]] = out.reshape(context[node.output[0]].shape).astype(np.float32)

    def masked_cycles(self, filter_enables: np.ndarray | None = None,
                      channel_enables: np.ndarray | None = None) -> int:
        """Modelled cycles of one image for the given enables (None: all enabled)."""
        return masked_mvau_cycles(self.folding(), filter_enables, channel_enables,
                                  pixels=self.pixels())

    def verify_node(self):
        info = super().verify_node()
        info.append("MaskedMVAU: mask input present" if len(self.onnx_node.input) == 4
                    else "MaskedMVAU needs 4 inputs (data, weights, thresholds, mask)")
        return info


@register_rtl_op
class MaskedMVAU_rtl(MaskedMVAU, RTLBackend):
    """RTL specialisation; its HDL comes from :mod:`dyfip_hw.rtl_codegen` (hw/dyfip_hw/rtl sources).

    Resource estimates reuse FINN-R's MVAU LUT/DSP formulas (as FINN's ``MVAU_hls``) plus
    the mask register and fold-skip logic; BRAM is FINN's MVAU weight-memory estimate.
    """

    def get_nodeattr_types(self):
        attrs = MaskedMVAU.get_nodeattr_types(self)
        attrs.update(RTLBackend.get_nodeattr_types(self))
        return attrs

    def execute_node(self, context, graph):
        if self.get_nodeattr("exec_mode") == "rtlsim":  # FINN's would feed weights as streams
            raise NotImplementedError(
                f"{self.onnx_node.name}: node-level rtlsim of MaskedMVAU_rtl is not supported; "
                "the RTL is verified by tests/test_rtl_masked_mvau.py (cocotb + Verilator) and "
                "the stitched design by FINN's stitched-IP rtlsim (needs Vivado)")
        return MaskedMVAU.execute_node(self, context, graph)

    def lut_estimation(self, fpgapart):
        mask_luts = self.mask_bits + 2 * (self.get_nodeattr("MH") // self.get_nodeattr("PE"))
        return MVAU_hls.lut_estimation(self, fpgapart) + mask_luts

    def dsp_estimation(self, fpgapart):
        return MVAU_hls.dsp_estimation(self, fpgapart)

    def rtl_params(self):
        """Parameters of ``dyfip_hw.rtl_codegen`` (module ``masked_mvau``, hw/dyfip_hw/rtl)."""
        from dyfip_hw.rtl_codegen import MvauRtlParams

        # the RTL's weights are signed; FINN's MinimizeWeightBitWidth makes a layer without
        # negative weights unsigned, which needs one more bit as signed
        weights = self.get_input_datatype(1)
        return MvauRtlParams(
            pe=self.get_nodeattr("PE"), simd=self.get_nodeattr("SIMD"),
            mw=self.get_nodeattr("MW"), mh=self.get_nodeattr("MH"), kk=self.get_nodeattr("KK"),
            weight_bits=weights.bitwidth() + (not weights.signed()),
            act_bits=self.get_input_datatype(0).bitwidth(),
            out_bits=self.get_output_datatype().bitwidth(), num_pixels=self.pixels(),
            use_thresholds=True, name=self.get_verilog_top_module_name())

    def generate_hdl(self, model, fpgapart, clk):
        """Wrapper + memory files + core sources via ``dyfip_hw.rtl_codegen``."""
        from dyfip_hw.rtl_codegen import generate_masked_mvau_rtl

        out_dir = Path(self.get_nodeattr("code_gen_dir_ipgen"))
        weights = model.get_initializer(self.onnx_node.input[1])
        thresholds = model.get_initializer(self.onnx_node.input[2])
        if thresholds.shape[0] == 1:
            thresholds = np.repeat(thresholds, self.get_nodeattr("MH"), axis=0)
        generate_masked_mvau_rtl(out_dir, self.rtl_params(), weights.astype(np.int64),
                                 thresholds.astype(np.int64), mem_prefix="./")
        self.set_nodeattr("gen_top_module", self.get_verilog_top_module_name())
        self.set_nodeattr("ipgen_path", str(out_dir))
        self.set_nodeattr("ip_path", str(out_dir))

    def get_rtl_file_list(self, abspath=False):
        from dyfip_hw.rtl_codegen import rtl_file_list

        files = rtl_file_list(self.get_nodeattr("code_gen_dir_ipgen"),
                              self.get_verilog_top_module_name())
        return [str(p) if abspath else p.name for p in files]

    def code_generation_ipi(self):
        """The core sources from the package (one copy for every instance, as FINN's
        finn-rtllib), the instance's wrapper from its code-generation folder."""
        from dyfip_hw.rtl_codegen import CORE_SOURCES, RTL_DIR

        wrapper = self.get_rtl_file_list(abspath=True)[-1]
        return ipi_commands(self, [*(RTL_DIR / f for f in CORE_SOURCES), wrapper])

    def get_verilog_top_module_intf_names(self):
        intf = super().get_verilog_top_module_intf_names()
        width = math.ceil(self.mask_bits / 8) * 8
        intf["s_axis"] = StreamsByInput(
            [("in0_V", self.get_instream_width_padded(0)), ("in1_V", width)], {MASK_INPUT: 1})
        intf["aximm"], intf["axilite"] = [], []
        return intf
