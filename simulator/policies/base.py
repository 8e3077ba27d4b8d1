"""What a placement policy decides, and the hooks it answers.

Per decode step and MoE layer the engine calls `place(layer, expert, tokens, restored, cache)` once for
every expert in the batch's union S, where `tokens` is how many of the batch's tokens routed to the
expert and `restored` how many of them have it among their top-n by router score. The answer is a
Placement: how many tokens the GPU computes and from which stored form, how many of those get the
low-rank compensation (which needs the expert's "factors" on the GPU), how many tokens an NDP unit
computes and from which form, and whether the GPU weights are pinned in HBM (no cache, no copy).
The engine turns that into cache lookups, copies, kernels and NDP ops; a policy never touches SimPy. A
policy may read the cache, but only whether forms (reads_forms) of the expert it places are resident.

A policy also declares what the rest of moesim needs to know about it, so that no code outside this
package matches on policy names:
- `label` and `style` (colour, marker, drawn as a method or not): how figures show it;
- `reference`: a bound to compare against (e.g. every expert in HBM, no bytes moved), kept outside the
  Pareto fronts of the policies that offload;
- its accuracy mapping, `accuracy_mix(bits, top_n, k)`: how each of a token's top-k (token, expert) pairs
  runs, by router rank: "restored" (low-bit weights + low-rank factors), "lowbit" (low-bit only) or
  "full" (full precision). By default a token's top-n pairs run as `top_n_runs` and the others as
  `rest_runs`, and everything is "full" when the run's bits are full precision (simulator.precision).
  simulator.sweep.accuracy turns the mix into what the accuracy model measures.

Adding a policy = one file defining a Policy subclass + one line in simulator/policies/registry.py.
"""

from __future__ import annotations

from collections.abc import Container
from typing import ClassVar, NamedTuple

from simulator.precision import is_full_precision


class Placement(NamedTuple):
    gpu_tokens: int = 0          # tokens whose expert GEMM runs on the GPU
    gpu_form: str = "lowbit"     # stored form the GPU GEMM reads: "lowbit" or "full"
    comp_tokens: int = 0         # of those, tokens restored with the low-rank factors
    ndp_tokens: int = 0          # tokens whose expert GEMM runs on the expert's NDP unit
    ndp_form: str = "lowbit"     # stored form the NDP unit reads
    pinned: bool = False         # GPU weights resident in HBM: no cache lookup, no transfer


RUNS = ("restored", "lowbit", "full")  # how a (token, expert) pair runs, as the accuracy model sees it


class PlotStyle(NamedTuple):
    color: str = "tab:olive"     # a matplotlib colour
    marker: str = "v"            # a matplotlib marker
    method: bool = False         # drawn as a studied method: small translucent points, its front labelled


class Policy:
    name: ClassVar[str]
    label: ClassVar[str | None] = None    # display name in figures (None: the CLI name)
    style: ClassVar[PlotStyle] = PlotStyle()
    reference: ClassVar[bool] = False     # a bound to compare against, outside the offloading fronts
    top_n_runs: ClassVar[str] = "lowbit"  # how a token's top-n pairs run (one of RUNS)
    rest_runs: ClassVar[str] = "lowbit"   # how its other top-k pairs run
    needs_ndp: ClassVar[bool] = False     # only legal on a system with NDP units
    compensates: ClassVar[bool] = False   # takes --rank / --plan (low-rank factors for top-n tokens)
    slot_forms: ClassVar[tuple[str, ...]] = ("lowbit",)  # forms one expert occupies in a per-layer cache slot
    reads_forms: ClassVar[tuple[str, ...]] = ()  # forms of the placed (layer, expert) whose residency place()
                                                 # reads; it reads nothing else of the cache
    expert_blind: ClassVar[bool] = False  # place() ignores layer and expert: asked once per (tokens, restored)

    @classmethod
    def display_name(cls) -> str:
        return cls.label or cls.name

    @classmethod
    def accuracy_mix(cls, bits: int, top_n: int, k: int) -> tuple[str, ...]:
        """How each of a token's top-k (token, expert) pairs runs, best router score first (one of RUNS
        each) when the run stores low-bit weights at `bits` and restores each token's top-`top_n`."""
        n = min(max(top_n, 0), k)
        if is_full_precision(bits):   # the low-bit form is the original and its residual is zero
            return ("full",) * k
        return (cls.top_n_runs,) * n + (cls.rest_runs,) * (k - n)

    @classmethod
    def weight_parameters(cls) -> tuple[str, ...]:
        """The run parameters that change what the policy does to the weights (labels, accuracy keys)."""
        runs = {cls.top_n_runs, cls.rest_runs}
        if runs == {"full"}:
            return ()
        return ("bits",) + (("top_n",) if len(runs) > 1 else ()) + (("rank",) if "restored" in runs else ())

    @property
    def reads_cache(self) -> bool:
        """place() depends on what the cache holds (else the engines memoise it per code)."""
        return bool(self.reads_forms)

    def prepare(self, scenario) -> None:
        """Check the scenario and precompute (e.g. a pinned set); raise UserError when it cannot run.
        `scenario` is a simulator.scenario.Scenario, which holds this policy: not imported here, so that the
        run contract sits above the policies without a cycle."""

    def place(self, layer: int, expert: int, tokens: int, restored: int, cache: Container[tuple[int, int, str]]) -> Placement:
        raise NotImplementedError
