"""mmdet 3.3's test of SinePositionalEncoding (tests/test_models/test_layers/
test_position_encoding.py), run against ours built from our registry, assertions unchanged."""
import pytest
import torch

from mmdeform.models.layers import SinePositionalEncoding as OurSinePositionalEncoding
from mmdeform.registry import MODELS


def SinePositionalEncoding(num_feats, **kwargs):  # noqa: N802 (the class in mmdet's test body)
    module = MODELS.build(dict(type='SinePositionalEncoding', num_feats=num_feats, **kwargs))
    assert type(module) is OurSinePositionalEncoding
    return module


def test_sine_positional_encoding(num_feats=16, batch_size=2):
    # test invalid type of scale
    with pytest.raises(AssertionError):
        module = SinePositionalEncoding(
            num_feats, scale=(3., ), normalize=True)

    module = SinePositionalEncoding(num_feats)
    h, w = 10, 6
    mask = (torch.rand(batch_size, h, w) > 0.5).to(torch.int)
    assert not module.normalize
    out = module(mask)
    assert out.shape == (batch_size, num_feats * 2, h, w)

    # set normalize
    module = SinePositionalEncoding(num_feats, normalize=True)
    assert module.normalize
    out = module(mask)
    assert out.shape == (batch_size, num_feats * 2, h, w)
