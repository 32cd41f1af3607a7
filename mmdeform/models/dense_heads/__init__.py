from .deformable_detr_head import DeformableDETRFocalHead

__all__ = ['DeformableDETRFocalHead']
