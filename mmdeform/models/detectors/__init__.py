from .deformable_detr import DeformableDETR, first_stage_branch

__all__ = ['DeformableDETR', 'first_stage_branch']
