"""SimPy hardware components: GPU compute stream, links, NDP units, the GPU expert cache, the event log."""
