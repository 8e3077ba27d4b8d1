"""The KV-cache memory budget, in blocks of `block` tokens (paged, as vLLM's block manager).

A request reserves the blocks of its whole sequence (prompt + output tokens) when it is admitted and frees
them when it finishes; the scheduler admits a request only when its blocks are free, so the bytes in use
never exceed the budget and nothing is ever preempted (see simulator.serving.scheduler). Bytes per token
are the model's (ModelSpec.kv_bytes_per_token x layers).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KVBudget:
    budget_bytes: float     # bytes the KV cache may use
    bytes_per_token: float  # KV bytes of one token in all layers
    block: int = 16         # tokens per block

    def __post_init__(self) -> None:
        if self.block < 1 or self.bytes_per_token <= 0 or self.budget_bytes < 0:
            raise ValueError(f"bad KV budget {self}")
        self.total_blocks = int(self.budget_bytes // (self.block * self.bytes_per_token))
        self.free_blocks = self.total_blocks

    def blocks(self, tokens: int) -> int:
        """Blocks that hold `tokens` tokens."""
        return -(-tokens // self.block)

    def fits_ever(self, tokens: int) -> bool:
        return self.blocks(tokens) <= self.total_blocks

    def can_reserve(self, tokens: int) -> bool:
        return self.blocks(tokens) <= self.free_blocks

    def reserve(self, tokens: int) -> int:
        n = self.blocks(tokens)
        if n > self.free_blocks:
            raise ValueError(f"{n} KV blocks asked, {self.free_blocks} free")
        self.free_blocks -= n
        return n

    def free(self, blocks: int) -> None:
        if blocks < 0 or self.free_blocks + blocks > self.total_blocks:
            raise ValueError(f"freeing {blocks} KV blocks with {self.free_blocks} of {self.total_blocks} free")
        self.free_blocks += blocks

    @property
    def used_bytes(self) -> float:
        return (self.total_blocks - self.free_blocks) * self.block * self.bytes_per_token

    def copy(self) -> KVBudget:
        other = KVBudget.__new__(KVBudget)
        other.__dict__.update(self.__dict__)
        return other
