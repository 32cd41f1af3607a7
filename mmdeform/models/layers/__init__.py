from .decoder import DeformableDetrDecoder, DeformableDetrDecoderLayer, refine_boxes
from .encoder import DeformableDetrEncoder, DeformableDetrEncoderLayer
from .fp32_linear import Fp32Linear
from .msdeform_attn import BatchFirstMSDeformAttn
from .positional_encoding import SinePositionalEncoding, box_sine_embedding

__all__ = [
    'DeformableDetrDecoder', 'DeformableDetrDecoderLayer', 'DeformableDetrEncoder',
    'DeformableDetrEncoderLayer', 'Fp32Linear', 'BatchFirstMSDeformAttn',
    'SinePositionalEncoding', 'box_sine_embedding', 'refine_boxes'
]
