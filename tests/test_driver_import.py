"""The driver imports in any environment without torch, FINN or pynq (host side)."""
import subprocess
import sys

CODE = """
import sys
import dyfip.driver, dyfip.driver.iospec, dyfip.driver.host
bad = sorted(m for m in ('torch', 'brevitas', 'finn', 'pynq') if m in sys.modules)
assert not bad, bad
"""


def test_driver_imports_without_heavy_dependencies():
    subprocess.run([sys.executable, "-c", CODE], check=True)
