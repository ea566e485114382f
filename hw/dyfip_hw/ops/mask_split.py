"""``MaskSplit``: one stage-wide filter-enable vector -> one mask word per MaskedMVAU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType

from dyfip.dataflow import split_stage_mask
from finn.custom_op.fpgadataflow import register_custom_op
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from finn.custom_op.fpgadataflow.rtl import register_custom_op as register_rtl_op
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend

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
        f = self._filters()
        return f[ind] + (self.get_nodeattr("firstChannels") if ind == 0 else f[ind - 1])

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
        (out_dir / f"{top}.sv").write_text(self.verilog(top))
        self.set_nodeattr("gen_top_module", top)
        self.set_nodeattr("ipgen_path", str(out_dir))
        self.set_nodeattr("ip_path", str(out_dir))

    def verilog(self, top: str) -> str:
        """A one-word-in, one-word-per-layer-out AXI-Stream splitter (byte-padded words)."""
        f, first = self._filters(), self.get_nodeattr("firstChannels")
        pad = lambda bits: (bits + 7) // 8 * 8  # noqa: E731
        ports = [f"  input  logic [{pad(sum(f)) - 1}:0] in0_V_TDATA,",
                 "  input  logic in0_V_TVALID,", "  output logic in0_V_TREADY,"]
        decls, body, lo = [], [], 0
        busy = " | ".join(f"v{i}" for i in range(len(f)))
        for i, fi in enumerate(f):
            w = pad(self._out_bits(i))
            ports += [f"  output logic [{w - 1}:0] out{i}_V_TDATA,",
                      f"  output logic out{i}_V_TVALID,", f"  input  logic out{i}_V_TREADY,"]
            chan = f"{{{first}{{1'b1}}}}" if i == 0 else f"in0_V_TDATA[{lo - 1}:{lo - f[i - 1]}]"
            decls.append(f"  logic v{i}; logic [{w - 1}:0] d{i};")
            body += [f"  assign out{i}_V_TDATA = d{i}; assign out{i}_V_TVALID = v{i};",
                     "  always_ff @(posedge ap_clk) begin",
                     f"    if (!ap_rst_n) v{i} <= 1'b0;",
                     f"    else if (in0_V_TVALID && in0_V_TREADY) begin v{i} <= 1'b1;",
                     f"      d{i} <= {w}'({{{chan}, in0_V_TDATA[{lo + fi - 1}:{lo}]}}); end",
                     f"    else if (out{i}_V_TREADY) v{i} <= 1'b0;",
                     "  end"]
            lo += fi
        ports[-1] = ports[-1].rstrip(",")
        return "\n".join([f"module {top} (", "  input  logic ap_clk,", "  input  logic ap_rst_n,",
                          *ports, ");", *decls, f"  assign in0_V_TREADY = !({busy});", *body,
                          "endmodule", ""])

    def get_rtl_file_list(self, abspath=False):
        top = self.get_nodeattr("gen_top_module") or self.get_verilog_top_module_name()
        name = f"{top}.sv"
        return [str(Path(self.get_nodeattr("code_gen_dir_ipgen")) / name) if abspath else name]

    def code_generation_ipi(self):
        return ipi_commands(self, self.get_rtl_file_list(abspath=True))
