"""The discrete-event timer: SimPy processes for the GPU compute stream, the links and the NDP units, the GPU
expert cache, the event log, and the decode engine that drives them (simulator.des.engine)."""
