import torch
from torch import nn

from mmdeform.engine import CpuAmpOptimWrapper


def test_bfloat16_autocast_with_float32_weights():
    model = nn.Linear(4, 2)
    weight = model.weight.detach().clone()
    optim_wrapper = CpuAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with optim_wrapper.optim_context(model):
        output = model(torch.randn(3, 4))
    assert output.dtype == torch.bfloat16
    optim_wrapper.update_params(output.float().square().sum())
    assert model.weight.dtype == torch.float32
    assert not torch.equal(model.weight, weight)
    # outside the context: float32 again
    assert model(torch.randn(3, 4)).dtype == torch.float32
