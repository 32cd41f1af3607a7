"""The one switch of torch's deterministic algorithms that mmdeform's tools and tests use."""
from contextlib import contextmanager

import torch


@contextmanager
def deterministic_algorithms(enabled=True):
    """Run the block with ``torch.use_deterministic_algorithms(enabled)``, then restore the
    previous setting: the op's CUDA backward takes its deterministic kernel under it."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
