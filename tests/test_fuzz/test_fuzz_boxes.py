"""Property-based tests of the box formulas the detector uses: mmdet's (cx, cy, w, h) <-> (x1, y1,
x2, y2) conversions, mmdet's inverse sigmoid (clamped at 0 and 1) and the box refinement
b = sigmoid(delta + inverse_sigmoid(reference)) that the head and the decoder share."""
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mmdet.models.layers.transformer.utils import inverse_sigmoid
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh

from mmdeform.models.layers import refine_boxes

EPS = 1e-5  # inverse_sigmoid's clamp
DTYPES = st.sampled_from([torch.float32, torch.float64])


def tensors(shape, low=None, high=None):
    """float64 tensors of ``shape``; without bounds any float, infinities and NaN included."""
    return arrays(np.float64, shape, elements=st.floats(low, high)).map(torch.from_numpy)


@settings(max_examples=100)
@given(boxes=tensors(st.tuples(st.integers(0, 5), st.just(4)), -1e4, 1e4))
def test_cxcywh_xyxy_round_trips(boxes):
    torch.testing.assert_close(bbox_xyxy_to_cxcywh(bbox_cxcywh_to_xyxy(boxes)), boxes,
                               atol=1e-8, rtol=1e-12)
    torch.testing.assert_close(bbox_cxcywh_to_xyxy(bbox_xyxy_to_cxcywh(boxes)), boxes,
                               atol=1e-8, rtol=1e-12)


@settings(max_examples=100)
@given(x=tensors(st.integers(1, 8), 0, 1), dtype=DTYPES)
def test_inverse_sigmoid_inverts_sigmoid_up_to_its_clamp(x, dtype):
    x = x.to(dtype)
    logits = inverse_sigmoid(x)
    assert logits.isfinite().all()  # also at exactly 0 and 1
    assert ((logits.sigmoid() - x).abs() <= EPS + 1e-6).all()
    order = x.argsort()
    assert (logits[order].diff() >= 0).all()  # monotone


@settings(max_examples=50)
@given(x=tensors(st.integers(1, 8)))
def test_inverse_sigmoid_clamps_outside_the_unit_interval(x):
    logits = inverse_sigmoid(x)
    nan = x.isnan()
    assert logits[nan].isnan().all()  # NaN stays NaN (the matcher then raises)
    torch.testing.assert_close(logits[~nan], inverse_sigmoid(x[~nan].clamp(0, 1)))


@settings(max_examples=100)
@given(reference=tensors(st.tuples(st.integers(0, 6), st.sampled_from([2, 4])), 0, 1),
       deltas=tensors(st.tuples(st.integers(0, 6), st.just(4)), -1e30, 1e30),
       dtype=DTYPES)
def test_box_refinement(reference, deltas, dtype):
    rows = min(len(reference), len(deltas))
    reference, deltas = reference[:rows].to(dtype), deltas[:rows].to(dtype)
    boxes = refine_boxes(reference, deltas)
    assert boxes.shape == deltas.shape and boxes.isfinite().all()
    assert ((boxes >= 0) & (boxes <= 1)).all()
    # zero deltas keep the reference (up to the clamp); a 2-d one gives (x, y) and sigmoid(wh)
    unchanged = refine_boxes(reference, torch.zeros_like(deltas))
    assert ((unchanged[:, :reference.shape[1]] - reference).abs() <= EPS + 1e-6).all()
    if reference.shape[1] == 2:
        torch.testing.assert_close(boxes[:, 2:], deltas[:, 2:].sigmoid(), atol=0, rtol=0)
