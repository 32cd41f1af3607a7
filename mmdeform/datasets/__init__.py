"""Datasets and data transforms of mmdeform (registered in mmdeform.registry)."""
