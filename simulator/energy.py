"""Energy per token: joules by component, from a run's per-step work and the machine's energy figures.

Both timers record, per step, the work of its ops (simulator.scenario.WORK_COLUMNS: GPU FLOPs and HBM
bytes of its kernels, NDP FLOPs by precision and the bytes the units read, bytes copied into the GPU
cache) and the bytes on each link direction; this module turns them into joules once, so both timers give
the same joules. With the figures of SystemSpec.energy (each sourced in the hwconfig):

    gpu_compute  = GPU FLOPs x J/FLOP (16-bit: GEMMs run dequantised)
    gpu_memory   = (bytes the GPU kernels read + bytes arriving over links + bytes leaving) x 8 x HBM J/bit
    link         = sum over links of bytes moved (both directions) x 8 x the link's J/bit
    host_memory  = bytes copied from host DRAM x 8 x host J/bit          (experts in host memory)
    cxl_memory   = (bytes copied from CXL memory + bytes the NDP units read) x 8 x CXL J/bit
    ndp_compute  = sum over precisions of NDP FLOPs x J/op at that precision
    static       = (GPU + NDP units + CXL device idle power) x the step's time

The seven add up to the total exactly (the total and the J/token are their sums). A machine without an energy section
gives no joules (None), never zeros.
"""

from __future__ import annotations

import numpy as np

from simulator import costs
from simulator.config.system import SystemSpec
from simulator.scenario import RunResult, link_byte_columns

COMPONENTS = ("gpu_compute", "gpu_memory", "link", "host_memory", "cxl_memory", "ndp_compute", "static")
BITS = 8.0  # per byte


def step_energy(system: SystemSpec, steps: dict) -> dict[str, np.ndarray] | None:
    """Joules per component per step [S] from the per-step columns `steps` (RunResult.steps); None when
    the system has no energy figures."""
    e = system.energy
    if e is None:
        return None
    col = {name: np.asarray(values, dtype=np.float64) for name, values in steps.items()}
    link_bytes = {name: np.zeros(len(col["step"])) for name in (link.name for link in system.links)}
    for column, name, _ in link_byte_columns(system):
        link_bytes[name] = link_bytes[name] + col[column]
    moved = sum(link_bytes.values())                                       # [S] bytes over any link
    none = np.zeros_like(moved)
    from_host = col["copied_bytes"] if system.expert_memory == "host" else none  # where cache copies read
    from_cxl = col["copied_bytes"] if system.expert_memory == "cxl" else none
    ndp = [col[f"ndp_flops_{p}"] * e.ndp_joules_per_op(p) for p in costs.NDP_PRECISIONS] if e.ndp_op else [none]
    return {
        "gpu_compute": col["gpu_flops"] * e.gpu_joules_per_flop("fp16"),
        "gpu_memory": (col["gpu_bytes"] + moved) * BITS * e.hbm,
        "link": sum((b * BITS * e.links[name] for name, b in link_bytes.items()), none),
        "host_memory": from_host * BITS * e.host_memory,
        "cxl_memory": (from_cxl + col["ndp_bytes"]) * BITS * (e.cxl_memory or 0.0),
        "ndp_compute": sum(ndp, none),
        "static": (col["end_s"] - col["start_s"]) * (e.static.gpu + e.static.ndp + e.static.cxl_device),
    }


def summarize_energy(result: RunResult, tokens: int) -> dict | None:
    """Run totals: joules, J/token, tokens/J, average power and J/token per component (they add up to the
    J/token); None when the system has no energy figures."""
    per_step = step_energy(result.scenario.system, result.steps)
    if per_step is None or not tokens:
        return None
    joules = {name: float(per_step[name].sum()) for name in COMPONENTS}
    breakdown = {name: joules[name] / tokens for name in COMPONENTS}
    total, per_token = sum(joules.values()), sum(breakdown.values())  # the breakdown adds up to per_token
    wall = result.decode_time
    return {"total_j": total, "joules_per_token": per_token,
            "tokens_per_joule": 1.0 / per_token if per_token > 0 else None,
            "average_power_w": total / wall if wall > 0 else None,
            "breakdown_j_per_token": breakdown}
