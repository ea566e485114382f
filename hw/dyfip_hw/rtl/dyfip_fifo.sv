// Small synchronous ready/valid FIFO (register array, first-word fall-through).
//
// All outputs come from registers (in_ready = not full, out_valid = not empty, out_data =
// head entry): there is no combinational path from an input to an output handshake signal.
module dyfip_fifo #(
    parameter int unsigned WIDTH = 8,
    parameter int unsigned DEPTH = 2
) (
    input  logic             clk,
    input  logic             rst_n,
    input  logic [WIDTH-1:0] in_data,
    input  logic             in_valid,
    output logic             in_ready,
    output logic [WIDTH-1:0] out_data,
    output logic             out_valid,
    input  logic             out_ready
);
  localparam int unsigned PTR_BITS = DEPTH > 1 ? $clog2(DEPTH) : 1;
  localparam int unsigned CNT_BITS = $clog2(DEPTH + 1);

  if (DEPTH < 1) begin : g_err_depth
    $fatal(1, "dyfip_fifo: DEPTH=%0d must be >= 1", DEPTH);
  end

  logic [WIDTH-1:0] mem[DEPTH];
  logic [PTR_BITS-1:0] wr_ptr, rd_ptr;
  logic [CNT_BITS-1:0] count;

  wire push = in_valid && in_ready;
  wire pop = out_valid && out_ready;

  assign in_ready  = count != CNT_BITS'(DEPTH);
  assign out_valid = count != '0;
  assign out_data  = mem[rd_ptr];

  function automatic logic [PTR_BITS-1:0] incr(input logic [PTR_BITS-1:0] ptr);
    return ptr == PTR_BITS'(DEPTH - 1) ? '0 : ptr + 1'b1;
  endfunction

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      wr_ptr <= '0;
      rd_ptr <= '0;
      count  <= '0;
    end else begin
      if (push) wr_ptr <= incr(wr_ptr);
      if (pop) rd_ptr <= incr(rd_ptr);
      if (push && !pop) count <= count + 1'b1;
      else if (pop && !push) count <= count - 1'b1;
    end
  end

  always_ff @(posedge clk) if (push) mem[wr_ptr] <= in_data;
endmodule
