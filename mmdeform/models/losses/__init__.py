from .giou_loss import GIoULoss, box_overlaps

__all__ = ['GIoULoss', 'box_overlaps']
