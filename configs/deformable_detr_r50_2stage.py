# ++ two-stage: queries from the encoder's top-300 proposals (paper: 46.9 AP, 41M parameters).
_base_ = './deformable_detr_r50_refine.py'
model = dict(as_two_stage=True)
