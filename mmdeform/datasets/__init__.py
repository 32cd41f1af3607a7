"""Datasets and data transforms of mmdeform (registered in mmdeform.registry), and the
generator of the embedded demo dataset."""
from .checked_coco import CheckedCOCO, CheckedCocoDataset
from .shapes import SHAPE_CLASSES, generate_shapes_dataset
from .transforms import LoadImageFromFile

__all__ = [
    'CheckedCOCO', 'CheckedCocoDataset', 'LoadImageFromFile', 'SHAPE_CLASSES',
    'generate_shapes_dataset'
]
