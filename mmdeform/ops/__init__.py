from .deterministic import deterministic_algorithms
from .ms_deform_attn import (KERNEL_DEVICES, flat_pixel_coords, level_start_index,
                             ms_deform_attn, reference_forward)
from .reference import ms_deform_attn_reference

__all__ = ['KERNEL_DEVICES', 'deterministic_algorithms', 'flat_pixel_coords',
           'level_start_index', 'ms_deform_attn', 'ms_deform_attn_reference',
           'reference_forward']
