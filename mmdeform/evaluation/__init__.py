"""Evaluation metrics of mmdeform (registered in mmdeform.registry)."""
from .coco_metric import CocoMetric
from .streaming_coco_metric import StreamingCocoMetric

__all__ = ['CocoMetric', 'StreamingCocoMetric']
