"""Evaluation metrics of mmdeform (registered in mmdeform.registry)."""
from .streaming_coco_metric import StreamingCocoMetric

__all__ = ['StreamingCocoMetric']
