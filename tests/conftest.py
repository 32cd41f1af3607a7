import pytest
import torch

from mmdeform import mmcv_ext
from mmdeform.ops import KERNEL_DEVICES


def pytest_configure(config):
    # The native op is the thing under test: without it every op test would compare the
    # reference with itself, so refuse to run rather than pass vacuously.
    if 'cpu' not in KERNEL_DEVICES:
        raise pytest.UsageError('mmdeform._C is not built: run `make install` first')
    config.addinivalue_line('markers', 'calls_mmcv_placeholders: the test calls mmcv ops that '
                            'mmcv-lite lacks on purpose')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_mmcv_op_called(request):
    """Nothing of mmdeform calls an mmcv kernel: any test that reaches one of mmcv-lite's
    placeholders fails, even where a caller caught its error. So every training step,
    validation, test run, export, FLOP count and benchmark that runs in the test process checks
    it (tests/test_tools/test_demo_configs.py runs the tools of `make demo` in-process for that)."""
    start = len(mmcv_ext.called_ops)
    yield
    called = mmcv_ext.called_ops[start:]
    if called and request.node.get_closest_marker('calls_mmcv_placeholders') is None:
        pytest.fail(f"mmcv ops that mmcv-lite lacks were called: {called}", pytrace=False)
