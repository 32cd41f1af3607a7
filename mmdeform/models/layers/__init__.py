from .decoder import DeformableDetrDecoder, DeformableDetrDecoderLayer, refine_boxes
from .encoder import DeformableDetrEncoder, DeformableDetrEncoderLayer
from .msdeform_attn import MultiScaleDeformableAttention
from .positional_encoding import SinePositionalEncoding, box_sine_embedding

__all__ = [
    'DeformableDetrDecoder', 'DeformableDetrDecoderLayer', 'DeformableDetrEncoder',
    'DeformableDetrEncoderLayer', 'MultiScaleDeformableAttention', 'SinePositionalEncoding',
    'box_sine_embedding', 'refine_boxes'
]
