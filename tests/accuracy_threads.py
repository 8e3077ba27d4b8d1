"""Test helper for the accuracy tests: run a module's tiny tensor ops on one intra-op thread.

On a shared 2-core runner, torch's hand-offs between two threads cost more than the small matmuls
themselves (measured 5-10x slower for the MiniLM and tiny-checkpoint tests); results are unchanged.
Use: `from accuracy_threads import one_thread  # noqa: F401` (a module-scoped autouse fixture).
"""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
