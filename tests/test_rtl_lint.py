"""Every RTL source (and a generated wrapper) is verilator -Wall clean."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.rtl


def test_rtl_lint_clean() -> None:
    res = subprocess.run([sys.executable, "-m", "dyfip_hw.rtl_lint"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "verilator -Wall: clean" in res.stdout
