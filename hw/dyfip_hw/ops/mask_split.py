"""``MaskSplit``: one stage-wide filter-enable vector -> one mask word per MaskedMVAU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType

from dyfip.dataflow import mask_word_bits, split_stage_mask
from finn.custom_op.fpgadataflow import register_custom_op
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from finn.custom_op.fpgadataflow.rtl import register_custom_op as register_rtl_op
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend

from ..rtl_codegen import mask_split_verilog
from .ipi import ipi_commands


@register_custom_op
class MaskSplit(HWCustomOp):
    """Input ``(1, sum F)`` BINARY; output ``l`` is ``(1, F_l + CH_l)`` BINARY, one word each."""

    def get_nodeattr_types(self):
        attrs = super().get_nodeattr_types()
        attrs.update({
            "filters": ("ints", True, []),  # F_l of every prunable layer, in order
            "firstChannels": ("i", True, 0),  # input channels of the first prunable layer
        })
        return attrs

    def _filters(self) -> list[int]:
        return [int(f) for f in self.get_nodeattr("filters")]

    def _out_bits(self, ind: int) -> int:
        return mask_word_bits(self._filters(), self.get_nodeattr("firstChannels"))[ind]

    def get_input_datatype(self, ind=0):
        return DataType["BINARY"]

    def get_output_datatype(self, ind=0):
        return DataType["BINARY"]

    def get_normal_input_shape(self, ind=0):
        return (1, sum(self._filters()))

    def get_normal_output_shape(self, ind=0):
        return (1, self._out_bits(ind))

    def get_folded_input_shape(self, ind=0):
        return (1, 1, sum(self._filters()))

    def get_folded_output_shape(self, ind=0):
        return (1, 1, self._out_bits(ind))

    def get_instream_width(self, ind=0):
        return sum(self._filters())

    def get_outstream_width(self, ind=0):
        return self._out_bits(ind)

    def get_number_output_values(self):
        return len(self._filters())

    def get_exp_cycles(self):
        return len(self._filters())  # one output word per layer

    def make_shape_compatible_op(self, model):
        # ONNX keeps the (pre-set) output value_info when Split's own inference disagrees
        return helper.make_node("Split", [self.onnx_node.input[0]], list(self.onnx_node.output),
                                axis=-1)

    def infer_node_datatype(self, model):
        for out in self.onnx_node.output:
            model.set_tensor_datatype(out, DataType["BINARY"])

    def execute_node(self, context, graph):
        node = self.onnx_node
        mask = np.asarray(context[node.input[0]]).reshape(1, -1)
        parts = split_stage_mask(mask, self._filters(), self.get_nodeattr("firstChannels"))
        for name, part in zip(node.output, parts):
            context[name] = part.astype(np.float32)

    def verify_node(self):
        return ["MaskSplit: %d outputs for %d layers" % (len(self.onnx_node.output),
                                                         len(self._filters()))]


@register_rtl_op
class MaskSplit_rtl(MaskSplit, RTLBackend):
    """Pure wiring plus one register per output; HDL generated from a small template."""

    def get_nodeattr_types(self):
        attrs = MaskSplit.get_nodeattr_types(self)
        attrs.update(RTLBackend.get_nodeattr_types(self))
        return attrs

    def execute_node(self, context, graph):
        return MaskSplit.execute_node(self, context, graph)

    def lut_estimation(self, fpgapart):
        return 2 * len(self._filters())

    def generate_hdl(self, model, fpgapart, clk):
        out_dir = Path(self.get_nodeattr("code_gen_dir_ipgen"))
        out_dir.mkdir(parents=True, exist_ok=True)
        top = self.get_verilog_top_module_name()
        (out_dir / f"{top}.v").write_text(self.verilog(top))
        self.set_nodeattr("gen_top_module", top)
        self.set_nodeattr("ipgen_path", str(out_dir))
        self.set_nodeattr("ip_path", str(out_dir))

    def verilog(self, top: str) -> str:
        """A one-word-in, one-word-per-layer-out AXI-Stream splitter (byte-padded words)."""
        return mask_split_verilog(top, self._filters(), self.get_nodeattr("firstChannels"))

    def get_rtl_file_list(self, abspath=False):
        top = self.get_nodeattr("gen_top_module") or self.get_verilog_top_module_name()
        name = f"{top}.v"
        return [str(Path(self.get_nodeattr("code_gen_dir_ipgen")) / name) if abspath else name]

    def code_generation_ipi(self):
        return ipi_commands(self, self.get_rtl_file_list(abspath=True))
