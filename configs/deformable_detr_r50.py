# Multi-scale Deformable DETR, ResNet-50, 50 epochs (paper: 44.5 AP, 40M parameters).
_base_ = [
    '_base_/models/deformable_detr_r50.py', '_base_/datasets/coco_detection.py',
    '_base_/schedules/schedule_50e.py', '_base_/default_runtime.py'
]
