"""cocotb testbench of the MaskSplit top (FINN port names in0_V, out<l>_V): one stage-wide
mask word in, one word per filter-enable layer out, each output stalled at random.

Stimulus and result are JSON files named by the environment (see dyfip_hw.rtl_sim.run_tb).
"""
from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from tb_masked_mvau import Source


@cocotb.test()
async def run_stimulus(dut):
    stim = json.loads(open(os.environ["DYFIP_TB_STIM"]).read())
    rng = random.Random(stim.get("seed", 0))
    layers, n_out = stim["layers"], len(stim["in_words"])
    cocotb.start_soon(Clock(dut.ap_clk, 2, unit="ns").start())
    dut.ap_rst_n.value = 0
    outs = [(getattr(dut, f"out{i}_V_TDATA"), getattr(dut, f"out{i}_V_TVALID"),
             getattr(dut, f"out{i}_V_TREADY")) for i in range(layers)]
    for _, _, ready in outs:
        ready.value = 0
    source = Source(dut, "in0_V", stim["in_words"], stim.get("in_gap", 0.0), rng)
    for _ in range(3):
        await FallingEdge(dut.ap_clk)
    dut.ap_rst_n.value = 1
    words: list[list[int]] = [[] for _ in range(layers)]
    cycle, stall = 0, stim.get("out_stall", 0.0)
    while cycle < stim.get("max_cycles", 100_000) and min(map(len, words)) < n_out:
        await FallingEdge(dut.ap_clk)
        source.step(cycle)
        for (data, valid, ready), got in zip(outs, words):
            take = stall == 0 or rng.random() >= stall
            ready.value = int(take)
            if take and int(valid.value):
                got.append(int(data.value))
        cycle += 1
    with open(os.environ["DYFIP_TB_RESULT"], "w") as f:
        json.dump({"words": words, "cycles": cycle, "in_cycles": source.cycles}, f)
