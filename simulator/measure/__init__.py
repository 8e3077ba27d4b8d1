"""Ground truth for the simulator: microbenchmarks that turn a machine into a hwconfig and runtime profile
(`moesim profile`), and a real offloaded decode loop in torch whose time is measured and compared with
moesim's prediction (`moesim measure`).

    shape.py          the harness's model shape (a preset, fewer layers, smaller widths) and its trace
    device.py         cpu / cuda: resolution with one-line errors, the stream clock that times regions
    kernels.py        packed low-bit layouts, the dequant kernel, the harness's ops (attention, router,
                      expert, compensation, shared expert, LM head) on weights in device slots
    microbench.py     the measurements `moesim profile` makes (copies, per-op cost, bandwidth, GEMV/GEMM,
                      dequant per bits, each op kind of the harness in isolation)
    profile_writer.py measurements -> hwconfig YAML + runtime profile YAML (+ profile.json of raw figures)
    harness.py        the decode loop: experts in host memory, a device cache of expert slots (LRU/LFU),
                      copies, dequant, compensation; per-category timing and byte/hit bookkeeping
    compare.py        configurations, measured vs predicted
"""
