from .ms_deform_attn import KERNEL_DEVICES, level_start_index, ms_deform_attn
from .reference import ms_deform_attn_reference

__all__ = ['KERNEL_DEVICES', 'level_start_index', 'ms_deform_attn', 'ms_deform_attn_reference']
