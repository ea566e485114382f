"""DyFiP accelerator generation: FINN flow, filter-enable custom ops, RTL sources."""
