"""DyFiP: dynamic filter pruning of quantized CNNs on FPGA dataflow accelerators.

Importing the package is light (numpy only): the board driver lives in ``dyfip.driver`` and
never pulls in torch, Brevitas or FINN.
"""
__version__ = "0.1.0"
