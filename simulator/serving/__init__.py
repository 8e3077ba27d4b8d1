"""Serving: requests arrive, a continuous-batching scheduler forms steps, a timer times them.

simulator.serving.kv         the KV-cache budget in blocks (reserve at admission, free at finish)
simulator.serving.scheduler  FCFS continuous batching with chunked prefill: which tokens each step runs
simulator.serving.routing    which routing-trace tokens a request's tokens take, as the timers read them
simulator.serving.timers     step timers: fixed costs (tests), the compiled fast path, the SimPy DES
simulator.serving.metrics    per-request table, TTFT / TPOT / latency percentiles, goodput, max rate
simulator.serving.runner     RunSpec + ServeSpec -> scenario, KV budget, the loop, the result; rate sweeps
"""
