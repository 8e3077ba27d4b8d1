"""Routing traces: the per-token top-k expert choices and router scores that drive the simulator."""

from simulator.routing.trace import Trace, TraceMeta, load_trace, save_trace

__all__ = ["Trace", "TraceMeta", "load_trace", "save_trace"]
