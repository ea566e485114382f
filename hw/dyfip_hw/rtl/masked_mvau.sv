// Filter-enable (masked) matrix-vector-activation unit, the RTL twin of
// dyfip.kernels.masked_mvau (see hw/dyfip_hw/rtl/README.md for the interface and the schedule).
//
// Streams (AXI-Stream, ready/valid, words byte-padded, element i in bits [i*W +: W]):
//   s_axis_input : SIMD unsigned activations per word; MW/SIMD words per output pixel,
//                  (kernel position, channel) order, channel fastest.
//   s_axis_mask  : one word per image, read before its first pixel:
//                  bit i (i < MH) = enable of filter i, bit MH+c = enable of input channel c.
//   m_axis_output: PE outputs per word; MH/PE words per output pixel.
// Weights (signed) and thresholds (signed, ascending) come from $readmemh files.
//
// The unit runs forever, image after image of NUM_PIXELS output pixels each.
module masked_mvau #(
    parameter int unsigned PE = 1,
    parameter int unsigned SIMD = 1,
    parameter int unsigned MW = 4,
    parameter int unsigned MH = 4,
    parameter int unsigned KK = 1,  // kernel positions; MW = KK * CH
    parameter int unsigned WEIGHT_WIDTH = 4,
    parameter int unsigned ACT_WIDTH = 4,
    parameter int unsigned OUT_WIDTH = 4,  // thresholds per filter: T = 2^OUT_WIDTH - 1
    parameter int unsigned ACCU_WIDTH = 16,  // accumulator and threshold width (signed)
    parameter int unsigned NUM_PIXELS = 1,  // output pixels per image (one mask word each)
    parameter bit USE_THRESHOLDS = 1'b1,  // 0: output the raw accumulator (OUT_WIDTH = ACCU_WIDTH)
    parameter int unsigned OUT_FIFO_DEPTH = 4,  // >= 4 sustains one output word per cycle
    parameter string WEIGHT_FILE = "",
    parameter string THRESH_FILE = "",
    localparam int unsigned IN_STREAM_WIDTH = (SIMD * ACT_WIDTH + 7) / 8 * 8,
    localparam int unsigned MASK_STREAM_WIDTH = (MH + MW / KK + 7) / 8 * 8,
    localparam int unsigned OUT_STREAM_WIDTH = (PE * OUT_WIDTH + 7) / 8 * 8
) (
    input logic clk,
    input logic rst_n,  // synchronous, active low

    // Byte-padding bits above the payload of the input words are ignored by design.
    /* verilator lint_off UNUSEDSIGNAL */
    input  logic [IN_STREAM_WIDTH-1:0] s_axis_input_tdata,
    input  logic                       s_axis_input_tvalid,
    output logic                       s_axis_input_tready,

    input  logic [MASK_STREAM_WIDTH-1:0] s_axis_mask_tdata,
    /* verilator lint_on UNUSEDSIGNAL */
    input  logic                         s_axis_mask_tvalid,
    output logic                         s_axis_mask_tready,

    output logic [OUT_STREAM_WIDTH-1:0] m_axis_output_tdata,
    output logic                        m_axis_output_tvalid,
    input  logic                        m_axis_output_tready
);
  // ---- geometry -------------------------------------------------------------------------
  localparam int unsigned CH = MW / KK;  // input channels
  localparam int unsigned NF = MH / PE;  // neuron folds
  localparam int unsigned SF = MW / SIMD;  // synapse folds
  localparam int unsigned CG = CH / SIMD;  // channel groups (synapse folds per kernel position)
  localparam int unsigned T = USE_THRESHOLDS ? (1 << OUT_WIDTH) - 1 : 1;
  localparam int unsigned MASK_BITS = MH + CH;
  localparam int unsigned NF_BITS = NF > 1 ? $clog2(NF) : 1;
  localparam int unsigned SF_BITS = SF > 1 ? $clog2(SF) : 1;
  localparam int unsigned LD_BITS = $clog2(SF + 1);
  localparam int unsigned CG_BITS = CG > 1 ? $clog2(CG) : 1;
  localparam int unsigned KK_BITS = KK > 1 ? $clog2(KK) : 1;
  localparam int unsigned PX_BITS = NUM_PIXELS > 1 ? $clog2(NUM_PIXELS) : 1;
  localparam int unsigned WA_BITS = NF * SF > 1 ? $clog2(NF * SF) : 1;
  localparam int unsigned CR_BITS = $clog2(OUT_FIFO_DEPTH + 1);
  localparam int unsigned IN_BITS = SIMD * ACT_WIDTH;
  localparam int unsigned OUT_BITS = PE * OUT_WIDTH;

  // ---- elaboration-time parameter checks --------------------------------------------------
  if (KK == 0 || MW % KK != 0) begin : g_err_kk
    $fatal(1, "masked_mvau: MW=%0d is not a multiple of KK=%0d (MW must equal KK*CH)", MW, KK);
  end
  if (PE == 0 || MH % PE != 0) begin : g_err_pe
    $fatal(1, "masked_mvau: PE=%0d does not divide MH=%0d", PE, MH);
  end
  if (SIMD == 0 || CH % SIMD != 0) begin : g_err_simd
    $fatal(1, "masked_mvau: SIMD=%0d does not divide the CH=%0d input channels (MW/KK)", SIMD, CH);
  end
  if (NUM_PIXELS == 0) begin : g_err_px
    $fatal(1, "masked_mvau: NUM_PIXELS must be >= 1");
  end
  if (!USE_THRESHOLDS && OUT_WIDTH != ACCU_WIDTH) begin : g_err_noact
    $fatal(1, "masked_mvau: without thresholds OUT_WIDTH=%0d must equal ACCU_WIDTH=%0d",
           OUT_WIDTH, ACCU_WIDTH);
  end
  if (OUT_FIFO_DEPTH < 2) begin : g_err_fifo
    $fatal(1, "masked_mvau: OUT_FIFO_DEPTH=%0d must be >= 2", OUT_FIFO_DEPTH);
  end

  // ---- parameter memories ----------------------------------------------------------------
  // Weight word at address nf*SF + sf: element (p, j) in bits [(p*SIMD + j)*WEIGHT_WIDTH +:]
  // = W[sf*SIMD + j][nf*PE + p]. Threshold word at nf: (p, t) in bits [(p*T + t)*ACCU_WIDTH +:].
  logic [PE*SIMD*WEIGHT_WIDTH-1:0] wmem[NF*SF];
  logic [PE*T*ACCU_WIDTH-1:0] tmem[NF];
  initial begin
    if (WEIGHT_FILE != "") $readmemh(WEIGHT_FILE, wmem);
    if (USE_THRESHOLDS && THRESH_FILE != "") $readmemh(THRESH_FILE, tmem);
  end

  // ---- mask queue (prefetches the next image's mask) ---------------------------------------
  logic [MASK_BITS-1:0] mask;
  logic mask_valid, mask_pop;
  dyfip_fifo #(
      .WIDTH(MASK_BITS),
      .DEPTH(2)
  ) u_mask_q (
      .clk(clk),
      .rst_n(rst_n),
      .in_data(s_axis_mask_tdata[MASK_BITS-1:0]),
      .in_valid(s_axis_mask_tvalid),
      .in_ready(s_axis_mask_tready),
      .out_data(mask),
      .out_valid(mask_valid),
      .out_ready(mask_pop)
  );

  logic [MH-1:0] filt_en;
  logic [CH-1:0] chan_en;
  logic [NF-1:0] fold_en;  // neuron fold has an enabled filter
  logic [CG-1:0] grp_en;  // channel group has an enabled channel
  assign filt_en = mask[MH-1:0];
  assign chan_en = mask[MASK_BITS-1:MH];
  always_comb begin
    for (int n = 0; n < NF; n++) fold_en[n] = |filt_en[n*PE+:PE];
    for (int g = 0; g < CG; g++) grp_en[g] = |chan_en[g*SIMD+:SIMD];
  end

  // ---- input loader: one pixel's MW/SIMD words into the replay buffer ----------------------
  logic [IN_BITS-1:0] ibuf[SF];
  logic [LD_BITS-1:0] ld_cnt;  // words of the current pixel received
  wire [IN_BITS-1:0] in_word = s_axis_input_tdata[IN_BITS-1:0];
  wire ld_fire = s_axis_input_tvalid && s_axis_input_tready;
  assign s_axis_input_tready = ld_cnt != LD_BITS'(SF);
  always_ff @(posedge clk) if (ld_fire) ibuf[SF_BITS'(ld_cnt)] <= in_word;

  // ---- issue stage: one step per cycle ------------------------------------------------------
  // Position (kp, cg) = synapse fold kp*CG + cg of neuron fold nf. The first enabled fold of a
  // pixel walks every synapse fold as the input arrives (bypassing the buffer); later enabled
  // folds replay only the enabled channel groups; a disabled fold is one zero-word step.
  logic [PX_BITS-1:0] px;
  logic [NF_BITS-1:0] nf;
  logic [KK_BITS-1:0] kp;
  logic [CG_BITS-1:0] cg;
  logic loaded;  // the first enabled fold of this pixel is done: replay mode
  logic eng_fin;  // all folds of this pixel issued (waiting for the loader)
  logic [CR_BITS-1:0] credits;  // free output FIFO slots not yet claimed

  logic [CG_BITS-1:0] first_cg, next_cg;
  logic any_grp, has_next;
  always_comb begin
    first_cg = '0;
    next_cg = '0;
    any_grp = 1'b0;
    has_next = 1'b0;
    for (int g = CG - 1; g >= 0; g--) begin
      if (grp_en[g]) begin
        first_cg = CG_BITS'(g);
        any_grp  = 1'b1;
        if (g > int'(cg)) begin
          next_cg  = CG_BITS'(g);
          has_next = 1'b1;
        end
      end
    end
  end

  wire [SF_BITS-1:0] sf = SF_BITS'(int'(kp) * CG + int'(cg));
  wire cur_en = fold_en[nf];
  wire last_kp = kp == KK_BITS'(KK - 1);
  wire last_step = loaded ? !has_next && (last_kp || !any_grp)
                          : sf == SF_BITS'(SF - 1);
  wire emits = !cur_en || last_step;  // this step pushes an output word
  wire word_ready = loaded || LD_BITS'(sf) < ld_cnt || ld_fire;
  wire issue = mask_valid && !eng_fin && (!emits || credits != '0)
               && (!cur_en || word_ready);
  wire last_fold = nf == NF_BITS'(NF - 1);
  wire eng_done = eng_fin || (issue && emits && last_fold);
  wire ld_done = ld_cnt == LD_BITS'(SF) || (ld_fire && ld_cnt == LD_BITS'(SF - 1));
  wire pix_end = eng_done && ld_done;
  wire img_end = pix_end && px == PX_BITS'(NUM_PIXELS - 1);
  assign mask_pop = img_end;

  // Step operand: the word (buffer or bypass) with disabled channels zeroed.
  logic [IN_BITS-1:0] x_step;
  always_comb begin
    logic [IN_BITS-1:0] raw;
    logic [SIMD-1:0] keep;
    raw  = (LD_BITS'(sf) < ld_cnt) ? ibuf[sf] : in_word;
    keep = SIMD'(chan_en >> (int'(cg) * SIMD));
    for (int j = 0; j < SIMD; j++)
      x_step[j*ACT_WIDTH+:ACT_WIDTH] = keep[j] ? raw[j*ACT_WIDTH+:ACT_WIDTH] : '0;
  end

  wire out_fire = m_axis_output_tvalid && m_axis_output_tready;
  wire claim = issue && emits;

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      ld_cnt <= '0;
      px <= '0;
      nf <= '0;
      kp <= '0;
      cg <= '0;
      loaded <= 1'b0;
      eng_fin <= 1'b0;
      credits <= CR_BITS'(OUT_FIFO_DEPTH);
    end else begin
      if (claim && !out_fire) credits <= credits - 1'b1;
      else if (out_fire && !claim) credits <= credits + 1'b1;

      if (ld_fire) ld_cnt <= ld_cnt + 1'b1;

      if (issue) begin
        if (emits) begin  // fold done: next fold starts at the replay position
          if (last_fold) eng_fin <= 1'b1;
          else nf <= nf + 1'b1;
          if (cur_en) begin
            loaded <= 1'b1;
            kp <= '0;
            cg <= first_cg;
          end else if (loaded) begin
            kp <= '0;
            cg <= first_cg;
          end
        end else if (!loaded) begin  // first pass: every synapse fold in order
          if (cg == CG_BITS'(CG - 1)) begin
            cg <= '0;
            kp <= kp + 1'b1;
          end else cg <= cg + 1'b1;
        end else if (has_next) cg <= next_cg;  // replay: next enabled channel group
        else begin
          cg <= first_cg;
          kp <= kp + 1'b1;
        end
      end

      if (pix_end) begin
        ld_cnt <= '0;
        nf <= '0;
        kp <= '0;
        cg <= '0;
        loaded <= 1'b0;
        eng_fin <= 1'b0;
        px <= img_end ? '0 : px + 1'b1;
      end
    end
  end

  // ---- stage 1: operand registers, weight read -------------------------------------------
  logic v1, acc1, last1;
  logic [NF_BITS-1:0] nf1;
  logic [PE-1:0] pen1;  // filter enables of the fold (all 0 for a disabled fold)
  logic [IN_BITS-1:0] x1;
  logic [PE*SIMD*WEIGHT_WIDTH-1:0] w1;
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      v1 <= 1'b0;
      acc1 <= 1'b0;
      last1 <= 1'b0;
    end else begin
      v1 <= claim;  // an output word leaves stage 3 for this step
      acc1 <= issue && cur_en;
      last1 <= issue && cur_en && last_step;
    end
    nf1 <= nf;
    pen1 <= PE'(filt_en >> (int'(nf) * PE));
    x1 <= x_step;
    w1 <= wmem[WA_BITS'(int'(nf) * SF + int'(sf))];
  end

  // ---- stage 2: dot products and accumulation, threshold read ---------------------------
  logic signed [ACCU_WIDTH-1:0] dot[PE];
  always_comb begin
    for (int p = 0; p < PE; p++) begin
      dot[p] = '0;
      for (int j = 0; j < SIMD; j++)
        dot[p] = dot[p] + ACCU_WIDTH'($signed({1'b0, x1[j*ACT_WIDTH+:ACT_WIDTH]})
                                      * $signed(w1[(p*SIMD+j)*WEIGHT_WIDTH+:WEIGHT_WIDTH]));
    end
  end

  logic signed [ACCU_WIDTH-1:0] acc[PE], res2[PE];
  logic v2;
  logic [PE-1:0] pen2;
  logic [PE*T*ACCU_WIDTH-1:0] th2;
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      v2 <= 1'b0;
      for (int p = 0; p < PE; p++) acc[p] <= '0;
    end else begin
      v2 <= v1;
      if (acc1)
        for (int p = 0; p < PE; p++) begin
          if (last1) begin
            res2[p] <= acc[p] + dot[p];
            acc[p]  <= '0;
          end else acc[p] <= acc[p] + dot[p];
        end
    end
    pen2 <= pen1;
    th2   <= tmem[nf1];
  end

  // ---- stage 3: activation (threshold count) into the output FIFO ------------------------
  logic [OUT_BITS-1:0] out_word;
  always_comb begin
    for (int p = 0; p < PE; p++) begin
      logic [OUT_WIDTH-1:0] y;
      if (USE_THRESHOLDS) begin
        y = '0;
        for (int t = 0; t < T; t++)
          y = y + OUT_WIDTH'(res2[p] >= $signed(th2[(p*T+t)*ACCU_WIDTH+:ACCU_WIDTH]));
      end else y = OUT_WIDTH'(res2[p]);
      out_word[p*OUT_WIDTH+:OUT_WIDTH] = pen2[p] ? y : '0;  // disabled filter: exact zero
    end
  end

  logic [OUT_BITS-1:0] fifo_out;
  /* verilator lint_off PINCONNECTEMPTY */  // credits guarantee space: in_ready is not needed
  dyfip_fifo #(
      .WIDTH(OUT_BITS),
      .DEPTH(OUT_FIFO_DEPTH)
  ) u_out_q (
      .clk(clk),
      .rst_n(rst_n),
      .in_data(out_word),
      .in_valid(v2),
      .in_ready(),
      .out_data(fifo_out),
      .out_valid(m_axis_output_tvalid),
      .out_ready(m_axis_output_tready)
  );
  /* verilator lint_on PINCONNECTEMPTY */
  assign m_axis_output_tdata = OUT_STREAM_WIDTH'(fifo_out);
endmodule
