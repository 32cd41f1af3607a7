"""Hugging Face's ``DeformableDetrForObjectDetection`` checkpoints <-> ours.

Hugging Face made the hub's checkpoints from the authors' by renaming keys and splitting the
decoder self-attention's packed q/k/v projection, so their layout maps onto the authors'
(:mod:`.official`) and from there onto ours; the same tables, read backwards, write theirs.

What their files hold (transformers 4.x names; 5.x renames some modules in memory but writes
these names):

- the backbone under ``model.backbone.conv_encoder.model.``: timm's ResNet, whose names are
  torchvision's (as the authors' ``backbone.0.body``), or transformers' own ResNet
  (``embedder``, ``encoder.stages``);
- the heads ``class_embed.{k}`` and ``bbox_embed.{k}`` (k = 0 .. decoder layers, + 1 for the
  two-stage first stage), with the decoder's aliases ``model.decoder.bbox_embed.{k}``
  (refinement) and ``model.decoder.class_embed.{k}`` (two-stage). Tensors shared in memory are
  written once: a file may hold a head only under its alias, or only head 0 of heads tied to it
  (the shared heads without refinement; in transformers 5.x also the class heads of a
  refinement model whose config ties them, ``tie_word_embeddings``).
"""
import json
import os.path as osp
import re

import torch

from .coco_classes import NUM_CATEGORY_IDS, category_ids_to_classes, class_names_of_category_ids
from .hf_config import hf_architecture, hf_backbone, hf_num_labels
from .key_renames import rename_keys, reversed_pairs
from .official import mmdeform_to_official, official_to_mmdeform

# (Hugging Face, the authors') key prefixes; the q/k/v projections are packed before.
HF_OFFICIAL_PAIRS = [
    ('model.backbone.conv_encoder.model.', 'backbone.0.body.'),
    ('model.input_proj.', 'input_proj.'),
    ('model.level_embed', 'transformer.level_embed'),
    ('model.query_position_embeddings.', 'query_embed.'),
    ('model.reference_points.', 'transformer.reference_points.'),
    ('model.enc_output.', 'transformer.enc_output.'),
    ('model.enc_output_norm.', 'transformer.enc_output_norm.'),
    ('model.pos_trans.', 'transformer.pos_trans.'),
    ('model.pos_trans_norm.', 'transformer.pos_trans_norm.'),
    ('model.encoder.layers.{n}.self_attn.', 'transformer.encoder.layers.{n}.self_attn.'),
    ('model.encoder.layers.{n}.self_attn_layer_norm.', 'transformer.encoder.layers.{n}.norm1.'),
    ('model.encoder.layers.{n}.final_layer_norm.', 'transformer.encoder.layers.{n}.norm2.'),
    ('model.encoder.layers.{n}.fc1.', 'transformer.encoder.layers.{n}.linear1.'),
    ('model.encoder.layers.{n}.fc2.', 'transformer.encoder.layers.{n}.linear2.'),
    ('model.decoder.layers.{n}.self_attn.', 'transformer.decoder.layers.{n}.self_attn.'),
    ('model.decoder.layers.{n}.self_attn_layer_norm.', 'transformer.decoder.layers.{n}.norm2.'),
    ('model.decoder.layers.{n}.encoder_attn.', 'transformer.decoder.layers.{n}.cross_attn.'),
    ('model.decoder.layers.{n}.encoder_attn_layer_norm.',
     'transformer.decoder.layers.{n}.norm1.'),
    ('model.decoder.layers.{n}.final_layer_norm.', 'transformer.decoder.layers.{n}.norm3.'),
    ('model.decoder.layers.{n}.fc1.', 'transformer.decoder.layers.{n}.linear1.'),
    ('model.decoder.layers.{n}.fc2.', 'transformer.decoder.layers.{n}.linear2.'),
    ('class_embed.{n}.', 'class_embed.{n}.'),
    ('bbox_embed.{n}.', 'bbox_embed.{n}.'),
]
# transformers 5.x's names in memory (a state dict saved with torch.save) -> its files' names.
HF5_FILE_PAIRS = [
    ('model.backbone.model.', 'model.backbone.conv_encoder.model.'),
    ('model.decoder.layers.{n}.self_attn.o_proj.', 'model.decoder.layers.{n}.self_attn.out_proj.'),
    ('model.encoder.layers.{n}.mlp.', 'model.encoder.layers.{n}.'),
    ('model.decoder.layers.{n}.mlp.', 'model.decoder.layers.{n}.'),
]
BACKBONE = 'model.backbone.conv_encoder.model.'


def _hf_resnet_pairs():
    """transformers' ResNet -> torchvision's names (which timm's, the authors' and mmdet's
    share): the stem, then per stage and block the shortcut and up to three conv + BN."""
    pairs = [(BACKBONE + 'embedder.embedder.convolution.', BACKBONE + 'conv1.'),
             (BACKBONE + 'embedder.embedder.normalization.', BACKBONE + 'bn1.')]
    for stage in range(4):
        theirs = f'{BACKBONE}encoder.stages.{stage}.layers.{{n}}.'
        ours = f'{BACKBONE}layer{stage + 1}.{{n}}.'
        pairs += [(theirs + 'shortcut.convolution.', ours + 'downsample.0.'),
                  (theirs + 'shortcut.normalization.', ours + 'downsample.1.')]
        for conv in range(3):
            pairs += [(f'{theirs}layer.{conv}.convolution.', f'{ours}conv{conv + 1}.'),
                      (f'{theirs}layer.{conv}.normalization.', f'{ours}bn{conv + 1}.')]
    return pairs


HF_RESNET_PAIRS = _hf_resnet_pairs()
KEEP_THE_REST = [('', '')]
HEADS = ('class_embed', 'bbox_embed')
HEAD_ALIAS = re.compile(r'^model\.decoder\.(class_embed|bbox_embed)\.')
QKV = re.compile(r'^(model\.decoder\.layers\.\d+\.self_attn\.)([qkv])_proj\.(weight|bias)$')
LAYOUT = 'the Hugging Face checkpoint'


def hf_to_mmdeform(state_dict, config):
    """A Hugging Face state dict and its config.json (dict) -> our state dict; 91 rows indexed by
    COCO category id become our 80 classes (:mod:`.coco_classes`), other class rows stay."""
    architecture = hf_architecture(config)
    state_dict = rename_keys(state_dict, HF5_FILE_PAIRS + KEEP_THE_REST, LAYOUT)
    # their BatchNorms are frozen; ours get fresh batch counts below
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith('.num_batches_tracked')}
    tied = not architecture['with_box_refine'] or config.get('tie_word_embeddings', True)
    state_dict = all_heads(state_dict, architecture['decoder_layers'] +
                           int(architecture['two_stage']), tied)
    state_dict = pack_qkv(state_dict)
    if hf_backbone(config)[0] == 'resnet':
        state_dict = rename_keys(state_dict, HF_RESNET_PAIRS + KEEP_THE_REST, LAYOUT)
    state_dict = official_to_mmdeform(rename_keys(state_dict, HF_OFFICIAL_PAIRS, LAYOUT))
    if hf_num_labels(config) == NUM_CATEGORY_IDS:
        return category_ids_to_classes(state_dict)
    return state_dict


def hf_class_names(config):
    """Our class names from config.json's ``id2label``, in the order of
    :func:`hf_to_mmdeform`'s class rows (None without names)."""
    id2label = {int(k): v for k, v in (config.get('id2label') or {}).items()}
    if not id2label:
        return None
    if hf_num_labels(config) == NUM_CATEGORY_IDS:
        return class_names_of_category_ids(id2label)
    return tuple(id2label[i] for i in sorted(id2label))


def mmdeform_to_hf(state_dict, architecture, timm_backbone=False):
    """Our state dict -> Hugging Face's (the names its files use), every head written under
    each name it has (its aliases included), each tensor a copy of its own."""
    state_dict = rename_keys(mmdeform_to_official(state_dict),
                             reversed_pairs(HF_OFFICIAL_PAIRS), 'an mmdeform checkpoint')
    if not (timm_backbone or architecture['dilation']):
        state_dict = rename_keys(state_dict, reversed_pairs(HF_RESNET_PAIRS) + KEEP_THE_REST,
                                 'an mmdeform checkpoint')
    state_dict = split_qkv(state_dict)
    for key, value in list(state_dict.items()):
        head = key.split('.')[0]
        if (head == 'bbox_embed' and architecture['with_box_refine']) or \
                (head == 'class_embed' and architecture['two_stage']):
            state_dict['model.decoder.' + key] = value
    # safetensors refuses tensors that share memory (our shared heads do)
    return {k: v.detach().clone().contiguous() for k, v in state_dict.items()}


def all_heads(state_dict, num_heads, tied):
    """Every head k under ``class_embed.{k}`` / ``bbox_embed.{k}``: from its own key, its alias
    in the decoder, or (``tied``) head 0; the aliases removed.

    Raises:
        ValueError: an alias that differs from its head (our model has one tensor for both).
        KeyError: a head that is missing and not tied.
    """
    heads = {k: v for k, v in state_dict.items() if not HEAD_ALIAS.match(k)}
    for key, value in state_dict.items():
        if HEAD_ALIAS.match(key):
            head = key[len('model.decoder.'):]
            if head in heads and not torch.equal(heads[head], value):
                raise ValueError(f'{key} differs from {head}: the decoder refines boxes with '
                                 'other heads than those that predict, which our model (and the '
                                 "authors') cannot hold")
            heads.setdefault(head, value)
    for name in HEADS:
        first = {k[len(name) + 3:]: v for k, v in heads.items() if k.startswith(f'{name}.0.')}
        if not first:
            raise KeyError(f'{LAYOUT} has no {name}.0')
        for index in range(1, num_heads):
            for param, value in first.items():
                key = f'{name}.{index}.{param}'
                if key not in heads:
                    if not tied:
                        raise KeyError(f'{LAYOUT} has no {key}, and its config does not tie '
                                       'the heads (tie_word_embeddings is false)')
                    heads[key] = value
    return heads


def pack_qkv(state_dict):
    """The decoder self-attention's q, k, v projections -> torch's packed ``in_proj_*``."""
    packed, parts = {}, {}
    for key, value in state_dict.items():
        qkv = QKV.match(key)
        if qkv:
            parts.setdefault(qkv[1] + 'in_proj_' + qkv[3], {})[qkv[2]] = value
        else:
            packed[key] = value
    for key, qkv in parts.items():
        if set(qkv) != {'q', 'k', 'v'}:
            raise KeyError(f'{LAYOUT} lacks the {", ".join(sorted({"q", "k", "v"} - set(qkv)))} '
                           f'projection of {key.rsplit(".", 1)[0]}')
        packed[key] = torch.cat([qkv['q'], qkv['k'], qkv['v']])
    return packed


def split_qkv(state_dict):
    """The reverse of :func:`pack_qkv`."""
    split = {}
    for key, value in state_dict.items():
        packed = re.match(r'^(model\.decoder\.layers\.\d+\.self_attn\.)in_proj_(weight|bias)$',
                          key)
        if packed:
            for part, chunk in zip('qkv', value.chunk(3)):
                split[f'{packed[1]}{part}_proj.{packed[2]}'] = chunk
        else:
            split[key] = value
    return split


def load_hf_folder(folder):
    """(config dict, state dict) of a checkpoint folder: config.json with model.safetensors
    (or its shards), or pytorch_model.bin read with torch's safe unpickler."""
    config_path = osp.join(folder, 'config.json')
    if not osp.isfile(config_path):
        raise FileNotFoundError(f'no config.json in {folder}: not a Hugging Face checkpoint '
                                'folder')
    with open(config_path) as f:
        config = json.load(f)
    if config.get('model_type') != 'deformable_detr':
        raise ValueError(f'{config_path} is a {config.get("model_type")!r} model, not '
                         "'deformable_detr'")
    weights = osp.join(folder, 'model.safetensors')
    index = weights + '.index.json'
    if osp.isfile(weights) or osp.isfile(index):
        from safetensors.torch import load_file
        if osp.isfile(weights):
            return config, load_file(weights)
        with open(index) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        state_dict = {}
        for shard in shards:
            state_dict.update(load_file(osp.join(folder, shard)))
        return config, state_dict
    bin_path = osp.join(folder, 'pytorch_model.bin')
    if osp.isfile(bin_path):
        from mmdeform.utils.checkpoint import load_checkpoint_file
        return config, load_checkpoint_file(bin_path)
    raise FileNotFoundError(f'{folder} has config.json but no model.safetensors, '
                            'model.safetensors.index.json or pytorch_model.bin')


def save_hf_folder(folder, config, state_dict, preprocessor_config=None):
    """config.json, model.safetensors and (given) preprocessor_config.json, each written
    atomically."""
    from safetensors.torch import save
    from mmdeform.utils.checkpoint import atomic_write
    with atomic_write(osp.join(folder, 'model.safetensors')) as f:
        f.write(save(state_dict, metadata=dict(format='pt')))
    jsons = dict(config=config, preprocessor_config=preprocessor_config)
    for name, content in jsons.items():
        if content is not None:
            with atomic_write(osp.join(folder, f'{name}.json'), 'w', encoding='utf-8') as f:
                json.dump(content, f, indent=2, sort_keys=True)
                f.write('\n')
