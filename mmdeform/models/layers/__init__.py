from .msdeform_attn import MultiScaleDeformableAttention

__all__ = ['MultiScaleDeformableAttention']
