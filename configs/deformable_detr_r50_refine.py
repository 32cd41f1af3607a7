# + iterative bounding box refinement (paper: 46.2 AP, 41M parameters).
_base_ = './deformable_detr_r50.py'
model = dict(with_box_refine=True)
