"""The Makefile hands the user's board and settings to the CLI (dry runs: nothing is built)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]


@pytest.mark.parametrize("target", ["demo", "demo-seeds", "bench"])
def test_board_and_settings_reach_dyfip_run(target):
    dry = subprocess.run(["make", "-n", "--no-print-directory", target, "SEEDS=3", "BOARD=KV260",
                          "SET=k=3 mask_target_cycles=8192"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    run = next(line for line in dry.replace("\\\n", " ").splitlines() if "/dyfip run " in line)
    assert "--board KV260 --set k=3 --set mask_target_cycles=8192" in " ".join(run.split()), run
