"""Hugging Face ``DeformableDetrConfig`` (a ``config.json``) <-> our model configs.

Both sides are described in Hugging Face's vocabulary (``d_model``, ``decoder_n_points``, ...) by
an *architecture*: a flat dict of everything that decides what a model computes at inference
(dropouts, losses and matching costs do not). Two models with equal architectures compute the same
function of the same weights, so an architecture tells which of our configs fits a checkpoint,
and what differs when none does.

``config.json`` comes in two forms. The hub's checkpoints were written by transformers 4.x: the
backbone is named by ``use_timm_backbone: true, backbone: "resnet50"`` (and ``dilation`` for DC5).
transformers 5.x writes a ``backbone_config`` of ``model_type`` ``timm_backbone`` (``output_stride:
16`` for DC5) or ``resnet`` (transformers' own ResNet).
"""
import glob
import inspect
import math
from functools import partial
import os.path as osp
import re

from mmdeform.models.backbones import DC5ResNet
from mmdeform.models.detectors import DeformableDETR
from .coco_classes import COCO_CATEGORY_IDS, NUM_CATEGORY_IDS

# DeformableDetrConfig's defaults: a config.json leaves out what it does not change.
HF_DEFAULTS = dict(
    d_model=256, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
    decoder_attention_heads=8, encoder_ffn_dim=1024, decoder_ffn_dim=1024, encoder_n_points=4,
    decoder_n_points=4, num_feature_levels=4, num_queries=300, two_stage_num_proposals=300,
    with_box_refine=False, two_stage=False, activation_function='relu',
    position_embedding_type='sine', dilation=False, use_timm_backbone=True, backbone='resnet50')
HF_INPUT_PROJ = 'ChannelMapper(1x1 conv with bias, GroupNorm 32, no activation)'
# the stage strides and dilations of mmdet's ResNet by default (DC5ResNet holds DC5's)
RESNET_STRIDES, RESNET_DILATIONS = (1, 2, 2, 2), (1, 1, 1, 1)
# (block, blocks per stage) -> depth, as mmdet's ResNet and torchvision name them.
RESNET_DEPTHS = {('basic', (2, 2, 2, 2)): 18, ('basic', (3, 4, 6, 3)): 34,
                 ('bottleneck', (3, 4, 6, 3)): 50, ('bottleneck', (3, 4, 23, 3)): 101,
                 ('bottleneck', (3, 8, 36, 3)): 152}
RESNET_BASE_CHANNELS = 64  # a standard ResNet's, its stem's channels too
TIMM_RESNET = re.compile(r'^resnet(18|34|50|101|152)$')


def hf_fixed(d_model):
    """What Hugging Face's model hard-codes, in the architecture's terms, as our configs spell
    it."""
    return dict(input_proj=HF_INPUT_PROJ, encoder_own_level_only=False, box_mlp_layers=3,
                position_embedding=dict(num_feats=d_model // 2, temperature=10000,
                                        normalize=True, offset=-0.5, scale=2 * math.pi))


def stage_layout(dilation):
    """``backbone_strides`` and ``backbone_dilations`` of a standard ResNet, or of the authors'
    DC5 (``dilation``)."""
    if dilation:
        return dict(backbone_strides=list(DC5ResNet.STRIDES),
                    backbone_dilations=list(DC5ResNet.DILATIONS))
    return dict(backbone_strides=list(RESNET_STRIDES), backbone_dilations=list(RESNET_DILATIONS))


def resnet_widths(depth, base_channels=RESNET_BASE_CHANNELS, stem_channels=None):
    """[stem, stage 1 .. 4] output channels of a ResNet (standard: 64 base channels)."""
    expansion = 1 if depth < 50 else 4
    return [stem_channels or base_channels] + [base_channels * expansion * 2**i
                                               for i in range(4)]


def _setting(config, key):
    value = config.get(key)
    return HF_DEFAULTS[key] if value is None else value


def hf_backbone(config):
    """(layout, description) of a config.json's backbone: layout 'timm' or 'resnet' (the key
    layout of its weights), the description as :func:`our_backbone`'s."""
    levels = _setting(config, 'num_feature_levels')
    default_out = [2, 3, 4] if levels > 1 else [4]
    backbone = config.get('backbone_config')
    if backbone is None:  # transformers 4.x
        if not _setting(config, 'use_timm_backbone'):
            raise ValueError('config.json names its backbone by a checkpoint '
                             f'({config.get("backbone")!r}) instead of describing it in '
                             'backbone_config: its architecture is unknown')
        kwargs = config.get('backbone_kwargs') or {}
        backbone = dict(model_type='timm_backbone', backbone=_setting(config, 'backbone'),
                        out_indices=kwargs.get('out_indices', default_out),
                        output_stride=16 if _setting(config, 'dilation') else 32)
    if backbone.get('model_type') == 'timm_backbone':
        name = backbone.get('backbone')
        if not TIMM_RESNET.match(str(name)):
            raise ValueError(f'unsupported timm backbone {name!r}: only torchvision-style '
                             'ResNets (resnet18, 34, 50, 101, 152) map onto ours')
        # transformers 5.x turns config.dilation into output_stride 16 (4.x form above too)
        dilation = backbone.get('output_stride') == 16
        return 'timm', dict(backbone=name, backbone_widths=resnet_widths(int(name[6:])),
                            backbone_out_indices=list(backbone.get('out_indices') or default_out),
                            dilation=dilation, **stage_layout(dilation))
    if backbone.get('model_type') == 'resnet':
        return 'resnet', dict(backbone=_hf_resnet_name(backbone),
                              backbone_widths=[backbone.get('embedding_size', RESNET_BASE_CHANNELS)]
                              + list(backbone.get('hidden_sizes', resnet_widths(50)[1:])),
                              backbone_out_indices=_hf_resnet_out_indices(backbone, default_out),
                              # transformers' ResNet has no dilation: it ignores config.dilation
                              dilation=False, **stage_layout(False))
    raise ValueError(f'unsupported backbone_config model_type {backbone.get("model_type")!r}: '
                     "only 'timm_backbone' and 'resnet' map onto ours")


def _hf_resnet_name(backbone):
    layer_type = backbone.get('layer_type', 'bottleneck')
    depths = tuple(backbone.get('depths', (3, 4, 6, 3)))
    depth = RESNET_DEPTHS.get((layer_type, depths))
    if depth is None:
        return f'ResNet({layer_type} blocks {list(depths)})'
    name, unusual = f'resnet{depth}', []
    if backbone.get('downsample_in_bottleneck'):
        unusual.append('stride in the first 1x1 conv')
    if backbone.get('downsample_in_first_stage'):
        unusual.append('strided first stage')
    if backbone.get('hidden_act', 'relu') != 'relu':
        unusual.append(f'hidden_act={backbone["hidden_act"]}')
    return f'{name} ({", ".join(unusual)})' if unusual else name


def _hf_resnet_out_indices(backbone, default):
    if backbone.get('out_indices'):
        return list(backbone['out_indices'])
    if backbone.get('out_features'):
        return [int(name[len('stage'):]) for name in backbone['out_features']]
    return default


def hf_num_labels(config):
    """The number of class rows: ``id2label``'s length, as transformers counts them."""
    if config.get('id2label'):
        return len(config['id2label'])
    return config.get('num_labels', 2)


def hf_architecture(config):
    """The architecture of a Hugging Face config.json (a dict)."""
    s = partial(_setting, config)
    two_stage = s('two_stage')
    num_labels = hf_num_labels(config)
    return dict(
        hf_backbone(config)[1],
        **hf_fixed(s('d_model')),
        num_feature_levels=s('num_feature_levels'),
        d_model=s('d_model'),
        position_embedding_type=s('position_embedding_type'),
        encoder_layers=s('encoder_layers'),
        encoder_attention_heads=s('encoder_attention_heads'),
        encoder_n_points=s('encoder_n_points'),
        encoder_ffn_dim=s('encoder_ffn_dim'),
        decoder_layers=s('decoder_layers'),
        decoder_attention_heads=s('decoder_attention_heads'),
        decoder_cross_attention_heads=s('decoder_attention_heads'),
        decoder_n_points=s('decoder_n_points'),
        decoder_ffn_dim=s('decoder_ffn_dim'),
        activation_function=s('activation_function'),
        num_queries=s('two_stage_num_proposals') if two_stage else s('num_queries'),
        with_box_refine=s('with_box_refine') or two_stage,
        two_stage=two_stage,
        # 91 rows indexed by COCO category id become our 80 classes
        num_classes=len(COCO_CATEGORY_IDS) if num_labels == NUM_CATEGORY_IDS else num_labels)


def detector_default(argument):
    """The default of one of ``DeformableDETR``'s arguments."""
    return inspect.signature(DeformableDETR).parameters[argument].default


def config_architecture(cfg):
    """The architecture of one of our configs (an mmengine Config)."""
    model = cfg.model
    encoder_attn = model.encoder.layer_cfg.self_attn_cfg
    decoder = model.decoder.layer_cfg
    # What the config leaves out: SinePositionalEncoding's defaults (mmdet's) for its arguments,
    # DeformableDETR's (mmdet's) for the detector's.
    position = dict(normalize=False, offset=0., temperature=10000, scale=2 * math.pi)
    position.update(model.positional_encoding)
    position.pop('eps', None)  # 1e-6 on both sides (HF hard-codes it)
    activation = model.encoder.layer_cfg.ffn_cfg.get('act_cfg', dict(type='ReLU'))['type']
    two_stage = model.get('as_two_stage', detector_default('as_two_stage'))
    with_box_refine = model.get('with_box_refine', detector_default('with_box_refine'))
    return dict(
        our_backbone(model.backbone),
        input_proj=our_input_proj(model.neck),
        num_feature_levels=model.get('num_feature_levels', detector_default('num_feature_levels')),
        d_model=encoder_attn.embed_dims,
        position_embedding_type='sine',
        position_embedding=position,
        encoder_layers=model.encoder.num_layers,
        encoder_attention_heads=encoder_attn.num_heads,
        encoder_n_points=encoder_attn.num_points,
        encoder_ffn_dim=model.encoder.layer_cfg.ffn_cfg.feedforward_channels,
        encoder_own_level_only=encoder_attn.get('own_level_only', False),
        decoder_layers=model.decoder.num_layers,
        decoder_attention_heads=decoder.self_attn_cfg.num_heads,
        decoder_cross_attention_heads=decoder.cross_attn_cfg.num_heads,
        decoder_n_points=decoder.cross_attn_cfg.num_points,
        decoder_ffn_dim=decoder.ffn_cfg.feedforward_channels,
        activation_function=activation.lower(),
        num_queries=model.get('num_queries', detector_default('num_queries')),
        with_box_refine=with_box_refine,
        two_stage=two_stage,
        box_mlp_layers=model.bbox_head.get('num_reg_fcs', 2) + 1,
        num_classes=model.bbox_head.num_classes)


def our_backbone(backbone):
    """``backbone``, ``backbone_widths``, ``backbone_out_indices``, ``dilation`` (the authors'
    DC5) and the stages' strides and dilations of one of our backbone configs."""
    depth = backbone.get('depth')
    kind = backbone.type.split('.')[-1]  # without its registry scope
    widths = None
    if kind not in ('ResNet', 'DC5ResNet') or backbone.get('num_stages', 4) != 4:
        name = f'{backbone.type}(depth={depth})'
    else:
        widths = resnet_widths(depth, backbone.get('base_channels', RESNET_BASE_CHANNELS),
                               backbone.get('stem_channels'))
        unusual = [f'{key}={backbone[key]}' for key, standard in (
            ('style', 'pytorch'), ('deep_stem', False), ('avg_down', False))
            if backbone.get(key, standard) != standard]
        name = f'resnet{depth} ({", ".join(unusual)})' if unusual else f'resnet{depth}'
    dc5 = kind == 'DC5ResNet'
    # mmdet's dilations also dilate a stage's first block: not the authors' DC5
    stages = stage_layout(True) if dc5 else dict(
        backbone_strides=list(backbone.get('strides', RESNET_STRIDES)),
        backbone_dilations=list(backbone.get('dilations', RESNET_DILATIONS)))
    return dict(backbone=name,
                backbone_widths=widths,
                backbone_out_indices=[i + 1 for i in backbone.get('out_indices', (0, 1, 2, 3))],
                dilation=dc5, **stages)


def our_input_proj(neck):
    """Our neck, spelled like :data:`HF_INPUT_PROJ` when it is the same."""
    norm = neck.get('norm_cfg') or {}
    if (neck.type, neck.get('kernel_size', 3), neck.get('bias', 'auto'), neck.get('act_cfg', 1),
            norm.get('type')) == ('ChannelMapper', 1, True, None, 'GN'):
        return f'ChannelMapper(1x1 conv with bias, GroupNorm {norm.get("num_groups")}, ' \
               'no activation)'
    return f'{neck.type}({", ".join(f"{k}={v}" for k, v in neck.items() if k != "type")})'


def differences(theirs, ours):
    """``[(key, their value, our value)]`` where two architectures differ."""
    return [(key, theirs.get(key), ours.get(key)) for key in theirs.keys() | ours.keys()
            if theirs.get(key) != ours.get(key)]


def matching_config(architecture, config_paths):
    """(path, []) of the first config whose architecture equals ``architecture``, else (path of
    the closest one, its differences)."""
    from mmengine.config import Config
    best = None
    for path in config_paths:
        diffs = sorted(differences(architecture, config_architecture(Config.fromfile(path))))
        if not diffs:
            return path, []
        if best is None or len(diffs) < len(best[1]):
            best = (path, diffs)
    return best


def our_configs(root):
    """configs/deformable_detr_r50*.py: the paper's variants."""
    return sorted(glob.glob(osp.join(root, 'configs', 'deformable_detr_r50*.py')))


def demo_configs(root):
    """configs/demo/*.py: the small models of the shapes dataset."""
    return sorted(glob.glob(osp.join(root, 'configs', 'demo', '*.py')))


def hf_dropouts(cfg):
    """Our config's dropouts as Hugging Face's three (for training in transformers; it also
    drops out the encoder's input, which neither we nor the authors do)."""
    layer = cfg.model.decoder.layer_cfg
    return dict(dropout=layer.cross_attn_cfg.get('dropout', 0.1),
                attention_dropout=layer.self_attn_cfg.get('dropout', 0.0),
                activation_dropout=layer.ffn_cfg.get('ffn_drop', 0.0))


def hf_config_json(architecture, class_names, timm_backbone=False, dropouts=None):
    """A config.json (dict) that transformers 4.x and 5.x build our architecture from, with
    ``dropouts`` (see :func:`hf_dropouts`) for training there.

    The backbone is transformers' own ResNet (no timm needed), or with ``timm_backbone`` timm's,
    as on the hub; DC5 needs timm (transformers' ResNet has no dilation). Refinement heads are
    separate per layer, as the authors' are: ``tie_word_embeddings`` false stops transformers
    5.x from tying them to the first layer's.

    Raises:
        ValueError: naming what Hugging Face's model cannot express: what differs when the
            written config is read back.
    """
    depth = re.fullmatch(r'resnet(\d+)', architecture['backbone'])
    if not depth:
        raise ValueError("Hugging Face's Deformable DETR cannot express: backbone "
                         f"{architecture['backbone']!r} (it has a standard ResNet)")
    if architecture['two_stage'] and not architecture['with_box_refine']:
        raise ValueError("Hugging Face's Deformable DETR cannot express: two-stage without box "
                         'refinement (set with_box_refine=True)')
    depth = int(depth[1])
    config = {key: architecture[key] for key in (
        'd_model', 'num_feature_levels', 'encoder_layers', 'encoder_attention_heads',
        'encoder_n_points', 'encoder_ffn_dim', 'decoder_layers', 'decoder_attention_heads',
        'decoder_n_points', 'decoder_ffn_dim', 'activation_function', 'position_embedding_type',
        'with_box_refine', 'two_stage', 'num_queries', 'dilation')}
    config.update(
        architectures=['DeformableDetrForObjectDetection'], model_type='deformable_detr',
        two_stage_num_proposals=architecture['num_queries'],
        tie_word_embeddings=not architecture['with_box_refine'],
        id2label={str(i): name for i, name in enumerate(class_names)},
        label2id={name: i for i, name in enumerate(class_names)},
        use_pretrained_backbone=False, **(dropouts or {}))
    if timm_backbone or architecture['dilation']:
        config.update(use_timm_backbone=True, backbone=architecture['backbone'],
                      backbone_config=None)
    else:
        out_indices = architecture['backbone_out_indices']
        config.update(use_timm_backbone=False, backbone=None, backbone_config=dict(
            model_type='resnet', layer_type='basic' if depth < 50 else 'bottleneck',
            depths=list(next(d for (_, d), v in RESNET_DEPTHS.items() if v == depth)),
            embedding_size=architecture['backbone_widths'][0],
            hidden_sizes=architecture['backbone_widths'][1:],
            out_indices=out_indices, out_features=[f'stage{i}' for i in out_indices]))
    problems = differences(hf_architecture(config), architecture)
    if problems:
        raise ValueError("Hugging Face's Deformable DETR cannot express: " + '; '.join(
            f'{key} {ours!r} (it has {theirs!r})' for key, theirs, ours in sorted(problems)))
    return config
