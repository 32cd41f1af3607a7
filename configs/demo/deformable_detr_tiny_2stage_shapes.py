# The demo model with the paper's best variant: iterative box refinement + two-stage.
_base_ = './deformable_detr_tiny_shapes.py'
model = dict(with_box_refine=True, as_two_stage=True)
