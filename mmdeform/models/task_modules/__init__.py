from .hungarian_assigner import HungarianAssigner
from .match_costs import BBoxL1Cost, FocalLossCost, IoUCost

__all__ = ['HungarianAssigner', 'FocalLossCost', 'BBoxL1Cost', 'IoUCost']
