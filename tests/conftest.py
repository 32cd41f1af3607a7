import pytest
import torch

from mmdeform.ops import KERNEL_DEVICES


def pytest_configure(config):
    # The native op is the thing under test: without it every op test would compare the
    # reference with itself, so refuse to run rather than pass vacuously.
    if 'cpu' not in KERNEL_DEVICES:
        raise pytest.UsageError('mmdeform._C is not built: run `make install` first')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
