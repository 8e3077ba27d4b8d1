"""Parameter sweeps: a sweep file expands to points, each simulated (and its accuracy measured) on any
concurrent.futures Executor, results stored resumably and joined into one Parquet table."""

from simulator.sweep.runner import SweepResult, run_sweep, simulate_point
from simulator.sweep.spec import SweepPoint, SweepSpec, count_points, expand, iter_points, load_sweep

__all__ = ["SweepPoint", "SweepResult", "SweepSpec", "count_points", "expand", "iter_points", "load_sweep",
           "run_sweep", "simulate_point"]
