"""Policy names (as the CLI spells them) -> policy classes. Register a new policy with one line here.

Everything else in moesim that needs to know a policy (its accuracy mapping, display name and plot
style, whether it is a reference point) reads the class's declarations through `policy_class`, never
its name.
"""

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


DEFAULT_POLICY = NDPLRC.name  # what `moesim simulate` runs when no --policy is given: the method on GPU-NDP


def policy_class(name: str) -> type[Policy]:
    """The class registered as `name`; UserError naming the known ones otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        raise UserError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}", field="policy") from None


def declared(name: str) -> type[Policy]:
    """The class registered as `name`, or the base Policy's defaults for a name not registered here
    (e.g. a table written by another version): for figures, which draw whatever rows they are given."""
    return POLICIES.get(name, Policy)


def get_policy(name: str) -> Policy:
    return policy_class(name)()


def names(*, reference: bool | None = None, compensates: bool | None = None,
          needs_ndp: bool | None = None) -> list[str]:
    """Registered names in registry order whose declarations equal the ones given (None: any)."""
    want = {"reference": reference, "compensates": compensates, "needs_ndp": needs_ndp}
    return [n for n, cls in POLICIES.items()
            if all(v is None or getattr(cls, k) == v for k, v in want.items())]
