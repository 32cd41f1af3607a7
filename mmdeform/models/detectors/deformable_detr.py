"""The Deformable DETR detector: the data flow of the paper's Figure 1, nothing else.

images -> backbone -> neck (multi-scale maps) -> flatten levels (padding masks, valid ratios,
positional + level embedding) -> encoder -> queries (learned, or the encoder's top-k proposals
in two-stage) -> decoder (box refinement per layer) -> head (losses or top-k predictions).
"""
import torch
import torch.nn.functional as F
from mmdet.models.detectors import BaseDetector
from torch import nn

from mmdeform.ops import flat_pixel_coords, level_start_index
from mmdeform.registry import MODELS
from ..layers import (DeformableDetrDecoder, DeformableDetrEncoder, Fp32Linear,
                      BatchFirstMSDeformAttn, SinePositionalEncoding, box_sine_embedding)
from ..layers.encoder import normalized_pixel_centres


def first_stage_branch(state_dict):
    """The index of the two-stage first stage's class and box branches in a DeformableDETR's
    head, from the names of its state dict or of a checkpoint's: the pair after the decoder
    layers' ones. None for a one-stage model (no proposal layer ``memory_trans_fc``)."""
    if 'memory_trans_fc.weight' not in state_dict:
        return None
    return len({name.split('.')[2] for name in state_dict if name.startswith('decoder.layers.')})


def check_required(bbox_head, **configs):
    """Raises, in mmdet's ``DeformableDETR``'s order, what it raises for a required config left
    None, with a message naming it: AttributeError for the head (mmdet updates it), TypeError
    for the others (mmdet unpacks them); AssertionError for head arguments the detector sets."""
    if bbox_head is None:
        raise AttributeError('DeformableDETR needs a bbox_head config (a dict), got None')
    set_by_detector = {'share_pred_layer', 'num_pred_layer', 'as_two_stage'} & set(bbox_head)
    if set_by_detector:
        raise AssertionError(f'bbox_head sets {sorted(set_by_detector)}, which the detector '
                             'sets from with_box_refine, as_two_stage and the decoder')
    for name, config in configs.items():
        if config is None:
            raise TypeError(f'DeformableDETR needs a {name} config (a dict), got None')


@MODELS.register_module()
class DeformableDETR(BaseDetector):
    """Deformable DETR (Zhu et al., ICLR 2021).

    Args:
        backbone (dict): the backbone config (e.g. mmdet's ResNet).
        neck (dict, optional): the neck config (e.g. mmdet's ChannelMapper); without one the
            backbone's maps go to the encoder.
        encoder, decoder (dict): ``num_layers`` and ``layer_cfg`` of the deformable encoder and
            decoder. Required.
        bbox_head (dict): the head config (e.g. our DeformableDETRFocalHead). Required.
        positional_encoding (dict): arguments of :class:`SinePositionalEncoding`. Required.
        num_queries (int): object queries. Default 100 (mmdet's; the paper's configs set 300).
        train_cfg, test_cfg (dict): passed to the head (assigner; max_per_img).
        with_box_refine (bool): iterative bounding box refinement. Default False.
        as_two_stage (bool): queries from the encoder's top-k proposals. Default False.
        num_feature_levels (int): L, the number of maps from the neck. Default 4.

    The arguments, their order and defaults are mmdet's ``DeformableDETR``'s; so are the
    exceptions a missing one raises.
    """

    def __init__(self, backbone, neck=None, encoder=None, decoder=None, bbox_head=None,
                 positional_encoding=None, num_queries=100, train_cfg=None, test_cfg=None,
                 data_preprocessor=None, init_cfg=None, with_box_refine=False,
                 as_two_stage=False, num_feature_levels=4):
        check_required(bbox_head, decoder=decoder, positional_encoding=positional_encoding,
                       encoder=encoder)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.num_queries = num_queries
        self.num_feature_levels = num_feature_levels
        self.as_two_stage = as_two_stage
        # Two-stage without refinement (as mmdet builds it): one pair of branches for the
        # decoder layers and the first stage, and no refinement between layers.
        self.with_box_refine = with_box_refine
        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        self.positional_encoding = SinePositionalEncoding(**positional_encoding)
        self.encoder = DeformableDetrEncoder(**encoder)
        self.decoder = DeformableDetrDecoder(**decoder)
        self.bbox_head = MODELS.build(dict(
            bbox_head, share_pred_layer=not self.with_box_refine,
            num_pred_layer=self.decoder.num_layers + int(as_two_stage),
            as_two_stage=as_two_stage, train_cfg=train_cfg, test_cfg=test_cfg))
        self.check_levels()

        dims = self.encoder.embed_dims
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, dims))
        # What computes box coordinates, and the queries from them, is fp32 under autocast
        # (Fp32Linear): the first stage's box input, the proposal embedding (it starts the
        # decoder's residual stream in fp32, as one-stage's learned queries do) and the
        # reference points.
        if as_two_stage:
            self.memory_trans_fc = Fp32Linear(dims, dims)
            self.memory_trans_norm = nn.LayerNorm(dims)
            self.pos_trans_fc = Fp32Linear(dims * 2, dims * 2)
            self.pos_trans_norm = nn.LayerNorm(dims * 2)
        else:
            self.query_embedding = nn.Embedding(num_queries, dims * 2)
            self.reference_points_fc = Fp32Linear(dims, 2)
        self.first_stage_branch = first_stage_branch(dict(self.named_parameters()))

    def check_levels(self):
        for name, module in self.named_modules():
            if isinstance(module, BatchFirstMSDeformAttn) and \
                    module.num_levels != self.num_feature_levels:
                raise ValueError(f'{name} attends to num_levels={module.num_levels} levels but '
                                 f'the detector has num_feature_levels={self.num_feature_levels}')

    def init_weights(self):
        super().init_weights()
        for coder in (self.encoder, self.decoder):
            for p in coder.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        # xavier above overwrote the offsets' direction grid: restore it.
        for module in self.modules():
            if isinstance(module, BatchFirstMSDeformAttn):
                module.init_weights()
        if self.as_two_stage:
            nn.init.xavier_uniform_(self.memory_trans_fc.weight)
            nn.init.xavier_uniform_(self.pos_trans_fc.weight)
        else:
            nn.init.xavier_uniform_(self.reference_points_fc.weight)
            nn.init.zeros_(self.reference_points_fc.bias)
        nn.init.normal_(self.level_embed)

    # --- the data flow -------------------------------------------------------------------

    def extract_feat(self, batch_inputs):
        feats = self.backbone(batch_inputs)
        return self.neck(feats) if self.with_neck else feats

    def forward_transformer(self, feats, batch_data_samples):
        """Decoder states (D, N, Q, C), the references each decoder layer refined, and the
        first stage's class logits and boxes (two-stage only, else None)."""
        masks = padding_masks(feats, batch_data_samples)
        feat, pos, mask, spatial_shapes, valid_ratios = self.flatten_levels(feats, masks)
        start_index = level_start_index(spatial_shapes)
        memory = self.encoder(query=feat, query_pos=pos, key_padding_mask=mask,
                              spatial_shapes=spatial_shapes, level_start_index=start_index,
                              valid_ratios=valid_ratios)
        if self.as_two_stage:
            valid_sizes = torch.stack([valid_size(m) for m in masks], 1)
            query, query_pos, reference, enc_class, enc_box = self.proposal_queries(
                memory, mask, spatial_shapes, valid_sizes)
        else:
            query, query_pos, reference = self.learned_queries(len(feat))
            enc_class = enc_box = None
        reg_branches = self.bbox_head.reg_branches if self.with_box_refine else None
        hidden_states, references = self.decoder(
            query=query, query_pos=query_pos, value=memory, key_padding_mask=mask,
            reference_points=reference, spatial_shapes=spatial_shapes,
            level_start_index=start_index, valid_ratios=valid_ratios, reg_branches=reg_branches)
        # Layer d refines the reference that layer d-1 produced (the initial one for d = 0).
        references = [reference, *references[:-1]]
        return hidden_states, references, enc_class, enc_box

    def flatten_levels(self, feats, masks):
        """Concatenates the L maps into sequences of S = sum(H_l * W_l) positions."""
        pos = [self.positional_encoding(mask) + self.level_embed[level].view(1, -1, 1, 1)
               for level, mask in enumerate(masks)]
        flat = [f.flatten(2).transpose(1, 2) for f in feats]  # (N, H*W, C)
        pos = [p.flatten(2).transpose(1, 2) for p in pos]
        # Made on the host and copied without making the host wait for the device.
        spatial_shapes = torch.tensor([f.shape[-2:] for f in feats], dtype=torch.long).to(
            feats[0].device, non_blocking=True)
        valid_ratios = torch.stack([valid_ratio(mask) for mask in masks], 1)
        return (torch.cat(flat, 1), torch.cat(pos, 1), torch.cat([m.flatten(1) for m in masks], 1),
                spatial_shapes, valid_ratios)

    def learned_queries(self, batch_size):
        """One-stage: learned (query_pos, tgt) pairs; reference points from query_pos."""
        query_pos, query = self.query_embedding.weight.chunk(2, dim=1)
        query_pos = query_pos.expand(batch_size, -1, -1)
        query = query.expand(batch_size, -1, -1)
        return query, query_pos, self.reference_points_fc(query_pos).sigmoid()

    def proposal_queries(self, memory, mask, spatial_shapes, valid_sizes):
        """Two-stage: every encoder pixel proposes a box; the top-k by the class-agnostic
        logit become the decoder's (detached) reference boxes and, through their sine
        embedding, its queries."""
        proposals, valid = pixel_proposals(mask, spatial_shapes, valid_sizes)
        proposal_logits = torch.log(proposals / (1 - proposals)).masked_fill(~valid, float('inf'))
        memory = memory.masked_fill(~valid, 0.)
        memory = self.memory_trans_norm(self.memory_trans_fc(memory))
        enc_class = self.bbox_head.cls_branches[self.first_stage_branch](memory)
        enc_box_logits = self.bbox_head.reg_branches[self.first_stage_branch](memory) + \
            proposal_logits
        # Images smaller than num_queries pixels in all levels get one query per pixel.
        top = enc_class[..., 0].topk(min(self.num_queries, memory.shape[1]), dim=1).indices
        reference = enc_box_logits.gather(1, top[..., None].expand(-1, -1, 4)).detach().sigmoid()
        # C/2 sine features per box coordinate give the 2C inputs of pos_trans_fc.
        embedding = box_sine_embedding(reference, num_feats=self.encoder.embed_dims // 2)
        embedding = self.pos_trans_norm(self.pos_trans_fc(embedding))
        query_pos, query = embedding.chunk(2, dim=-1)
        return query, query_pos, reference, enc_class, enc_box_logits.sigmoid()

    # --- mmdet's detector interface ------------------------------------------------------

    def loss(self, batch_inputs, batch_data_samples):
        feats = self.extract_feat(batch_inputs)
        outputs = self.forward_transformer(feats, batch_data_samples)
        return self.bbox_head.loss(*outputs, batch_data_samples)

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        feats = self.extract_feat(batch_inputs)
        hidden_states, references, _, _ = self.forward_transformer(feats, batch_data_samples)
        results = self.bbox_head.predict(hidden_states, references, batch_data_samples,
                                         rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs, batch_data_samples=None):
        feats = self.extract_feat(batch_inputs)
        hidden_states, references, _, _ = self.forward_transformer(feats, batch_data_samples)
        return self.bbox_head(hidden_states, references)


def padding_masks(feats, batch_data_samples):
    """Per level, (N, H_l, W_l) bool masks, True where the batch pads an image."""
    batch_size = len(feats[0])
    if batch_data_samples is None:
        return [f.new_zeros((batch_size, ) + f.shape[-2:], dtype=torch.bool) for f in feats]
    input_h, input_w = batch_data_samples[0].batch_input_shape
    masks = feats[0].new_ones((batch_size, input_h, input_w))
    for mask, sample in zip(masks, batch_data_samples):
        img_h, img_w = sample.img_shape
        mask[:img_h, :img_w] = 0
    return [F.interpolate(masks[None], size=f.shape[-2:])[0].to(torch.bool) for f in feats]


def valid_size(mask):
    """(N, 2): the unpadded width and height of a level, in pixels, from its (N, H, W) mask."""
    return torch.stack([(~mask[:, 0, :]).sum(1), (~mask[:, :, 0]).sum(1)], -1)


def valid_ratio(mask):
    """(N, 2): the unpadded fraction (w, h) of a level."""
    height, width = mask.shape[1:]
    valid_width, valid_height = valid_size(mask).unbind(-1)
    return torch.stack([valid_width / width, valid_height / height], -1)


def pixel_proposals(mask, spatial_shapes, valid_sizes):
    """Two-stage proposals, one per encoder pixel: the pixel centre normalized by the valid
    size, w = h = 0.05 * 2^l. ``valid_sizes`` (N, L, 2) are each level's valid (W, H) in pixels.
    Returns (N, S, 4) boxes (cx, cy, w, h) and an (N, S, 1) mask of the usable ones: inside
    (0.01, 0.99) in every coordinate and not at padding."""
    num_pixels = mask.shape[1]
    centres = normalized_pixel_centres(spatial_shapes, valid_sizes.float(), num_pixels)
    level = flat_pixel_coords(spatial_shapes, num_pixels)[0]
    sizes = (0.05 * 2.0**level).to(centres.dtype)[:, None]  # (S, 1)
    proposals = torch.cat([centres, sizes.expand_as(centres)], -1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True) & ~mask[..., None]
    return proposals, valid
