"""Policy names (as the CLI spells them) -> policy classes. Register a new policy with one line here."""

from __future__ import annotations

from simulator.errors import UserError
from simulator.policies.base import Policy
from simulator.policies.gpu_resident import GPUResident
from simulator.policies.ndp_hot import NDPHot
from simulator.policies.ndp_lowbit import NDPLowbit
from simulator.policies.ndp_lrc import NDPLRC
from simulator.policies.offload_fp16 import OffloadFP16
from simulator.policies.offload_lowbit import OffloadLowbit
from simulator.policies.offload_lrc import OffloadLRC
from simulator.policies.offload_mixed import OffloadMixed

POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (
    GPUResident, OffloadFP16, OffloadLowbit, OffloadLRC, OffloadMixed, NDPLowbit, NDPHot, NDPLRC)}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise UserError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}", field="policy") from None
