"""cocotb testbench of the masked MVAU top level (FINN port names in0_V / in1_V / out0_V).

Stimulus and result are JSON files named by the environment (see dyfip_hw.rtl_sim.run_tb).
One coroutine drives all three streams: at each falling edge it reads the DUT's handshake
outputs (registered in this design, so unaffected by this cycle's inputs), drives new inputs
and records the handshakes that complete at the next rising edge.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


class Source:
    """AXI-Stream source with random idle cycles; holds a word until it is accepted."""

    def __init__(self, dut, prefix: str, words: list[int], gap: float, rng: random.Random,
                 release: list[int] | None = None):
        self.data, self.valid = getattr(dut, f"{prefix}_TDATA"), getattr(dut, f"{prefix}_TVALID")
        self.ready = getattr(dut, f"{prefix}_TREADY")
        self.words, self.gap, self.rng = words, gap, rng
        self.release = release or [0] * len(words)
        self.idx, self.offering, self.cycles = 0, False, []
        self.valid.value = 0

    def step(self, cycle: int) -> None:
        if not self.offering and self.idx < len(self.words) and cycle >= self.release[self.idx] \
                and (self.gap == 0 or self.rng.random() >= self.gap):
            self.data.value = self.words[self.idx]
            self.offering = True
        self.valid.value = int(self.offering)
        if self.offering and int(self.ready.value):
            self.cycles.append(cycle)
            self.idx += 1
            self.offering = False


@cocotb.test()
async def run_stimulus(dut):
    stim = json.loads(open(os.environ["DYFIP_TB_STIM"]).read())
    rng = random.Random(stim.get("seed", 0))
    cocotb.start_soon(Clock(dut.ap_clk, 2, unit="ns").start())
    dut.ap_rst_n.value = 0
    dut.out0_V_TREADY.value = 0
    data = Source(dut, "in0_V", stim["in_words"], stim.get("in_gap", 0.0), rng)
    mask = Source(dut, "in1_V", stim["mask_words"], stim.get("mask_gap", 0.0), rng,
                  stim.get("mask_release"))
    for _ in range(3):
        await FallingEdge(dut.ap_clk)
    dut.ap_rst_n.value = 1
    out_stall, n_out = stim.get("out_stall", 0.0), stim["n_out"]
    max_cycles, tail = stim.get("max_cycles", 10_000_000), stim.get("tail_cycles", 20)
    out_words, out_cycles = [], []
    cycle, done_at = 0, None
    while cycle < max_cycles and (done_at is None or cycle < done_at + tail):
        await FallingEdge(dut.ap_clk)
        data.step(cycle)
        mask.step(cycle)
        ready = out_stall == 0 or rng.random() >= out_stall
        dut.out0_V_TREADY.value = int(ready)
        if ready and int(dut.out0_V_TVALID.value):
            out_words.append(int(dut.out0_V_TDATA.value))
            out_cycles.append(cycle)
            if len(out_words) == n_out:
                done_at = cycle
        cycle += 1
    result = {"out_words": out_words, "out_cycles": out_cycles, "cycles": cycle,
              "in_cycles": data.cycles, "mask_cycles": mask.cycles,
              "mask_accepted": mask.idx}
    with open(os.environ["DYFIP_TB_RESULT"], "w") as f:
        json.dump(result, f)
