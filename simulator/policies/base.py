"""What a placement policy decides, and the hooks it answers.

Per decode step and MoE layer the engine calls `place(layer, expert, tokens, restored, cache)` once for
every expert in the batch's union S, where `tokens` is how many of the batch's tokens routed to the
expert and `restored` how many of them have it among their top-n by router score. The answer is a
Placement: how many tokens the GPU computes and from which stored form, how many of those get the
low-rank compensation (which needs the expert's "factors" on the GPU), how many tokens an NDP unit
computes and from which form, and whether the GPU weights are pinned in HBM (no cache, no copy).
The engine turns that into cache lookups, copies, kernels and NDP ops; a policy never touches SimPy. A
policy may read the cache, but only whether forms (reads_forms) of the expert it places are resident.

Adding a policy = one file defining a Policy subclass + one line in simulator/policies/registry.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, NamedTuple

from simulator.hardware.cache import ExpertCache

if TYPE_CHECKING:
    from simulator.engine import Scenario


class Placement(NamedTuple):
    gpu_tokens: int = 0          # tokens whose expert GEMM runs on the GPU
    gpu_form: str = "lowbit"     # stored form the GPU GEMM reads: "lowbit" or "full"
    comp_tokens: int = 0         # of those, tokens restored with the low-rank factors
    ndp_tokens: int = 0          # tokens whose expert GEMM runs on the expert's NDP unit
    ndp_form: str = "lowbit"     # stored form the NDP unit reads
    pinned: bool = False         # GPU weights resident in HBM: no cache lookup, no transfer


class Policy:
    name: ClassVar[str]
    needs_ndp: ClassVar[bool] = False     # only legal on a system with NDP units
    compensates: ClassVar[bool] = False   # takes --rank / --plan (low-rank factors for top-n tokens)
    slot_forms: ClassVar[tuple[str, ...]] = ("lowbit",)  # forms one expert occupies in a per-layer cache slot
    reads_forms: ClassVar[tuple[str, ...]] = ()  # forms of the placed (layer, expert) whose residency place()
                                                 # reads; it reads nothing else of the cache
    expert_blind: ClassVar[bool] = False  # place() ignores layer and expert: asked once per (tokens, restored)

    @property
    def reads_cache(self) -> bool:
        """place() depends on what the cache holds (else the engines memoise it per code)."""
        return bool(self.reads_forms)

    def prepare(self, scenario: Scenario) -> None:
        """Check the scenario and precompute (e.g. a pinned set); raise UserError when it cannot run."""

    def place(self, layer: int, expert: int, tokens: int, restored: int, cache: ExpertCache) -> Placement:
        raise NotImplementedError
