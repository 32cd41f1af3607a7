"""Hugging Face's own DeformableDetrForObjectDetection and ours, on converted weights, give the
same logits and boxes; ours -> Hugging Face -> ours gives every tensor back."""
import json
import os

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from tools_loader import load_tool
from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection, ResNetConfig

from mmdeform.converters import COCO_CATEGORY_IDS, hf_to_mmdeform, load_hf_folder
from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
HF_TO_OURS = load_tool('model_converters/hf_to_mmdeform.py')
OURS_TO_HF = load_tool('model_converters/mmdeform_to_hf.py')
# Our config file and the Hugging Face switches of each variant.
VARIANTS = {
    'single_scale': ('deformable_detr_r50_single_scale.py', dict(num_feature_levels=1)),
    'multi_scale': ('deformable_detr_r50.py', {}),
    'refine': ('deformable_detr_r50_refine.py', dict(with_box_refine=True)),
    'two_stage': ('deformable_detr_r50_2stage.py', dict(with_box_refine=True, two_stage=True)),
}
SMALL = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=128,
             decoder_ffn_dim=128, num_queries=10, two_stage_num_proposals=10)


def our_config(variant, num_classes=80):
    """The variant's config with Hugging Face's small sizes of :data:`SMALL`, ResNet-18."""
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', VARIANTS[variant][0]))
    single = cfg.model.num_feature_levels == 1
    attn = dict(embed_dims=64)
    ffn = dict(embed_dims=64, feedforward_channels=128)
    cfg.merge_from_dict(dict(model=dict(
        num_queries=10,
        backbone=dict(depth=18, init_cfg=None),
        neck=dict(in_channels=[512] if single else [128, 256, 512], out_channels=64),
        encoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
        decoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn,
                                                  ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=32, normalize=True, offset=-0.5),
        bbox_head=dict(embed_dims=64, num_classes=num_classes))))
    return cfg


def build_ours(cfg):
    register_all_modules()
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


def hf_model(variant, tie_word_embeddings=True, **config):
    """A random Hugging Face model of the variant, with transformers' ResNet-18 and 91 classes.

    Every tensor is perturbed (the initial zeros of the box heads and attention weights would
    hide mistakes). Without tying, transformers 5.x keeps the decoder's refinement heads apart
    from the prediction heads: they get the same values, as in the authors' model.
    """
    levels = VARIANTS[variant][1].get('num_feature_levels', 4)
    backbone = ResNetConfig(layer_type='basic', depths=[2, 2, 2, 2],
                            hidden_sizes=[64, 128, 256, 512],
                            out_features=['stage4'] if levels == 1 else
                            ['stage2', 'stage3', 'stage4'])
    hf_config = DeformableDetrConfig(backbone_config=backbone, num_labels=91,
                                     tie_word_embeddings=tie_word_embeddings,
                                     **dict(SMALL, **VARIANTS[variant][1], **config))
    torch.manual_seed(0)
    model = perturbed(DeformableDetrForObjectDetection(hf_config).eval())
    with torch.no_grad():
        decoder = model.model.decoder
        if decoder.bbox_embed is not None:
            decoder.bbox_embed.load_state_dict(model.bbox_embed.state_dict())
        if decoder.class_embed is not None:
            decoder.class_embed.load_state_dict(model.class_embed.state_dict())
    return model


def perturbed(model):
    """``model`` with noise on every float tensor (each shared one once), variances positive."""
    seen = set()
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if id(tensor) in seen or not tensor.is_floating_point():
                continue
            seen.add(id(tensor))
            if name.endswith('running_var'):
                tensor.uniform_(0.5, 1.5)
            else:
                tensor.add_(torch.randn_like(tensor) * 0.05)
    return model


def padded_batch(shapes=((96, 128), (72, 100))):
    """Two images padded into one batch: the pixels, Hugging Face's pixel mask, our samples."""
    g = torch.Generator().manual_seed(1)
    height, width = max(h for h, _ in shapes), max(w for _, w in shapes)
    pixels = torch.zeros(len(shapes), 3, height, width)
    mask = torch.zeros(len(shapes), height, width, dtype=torch.long)
    samples = []
    for image, valid, (h, w) in zip(pixels, mask, shapes):
        image[:, :h, :w] = torch.randn(3, h, w, generator=g)
        valid[:h, :w] = 1
        samples.append(DetDataSample(metainfo=dict(img_shape=(h, w),
                                                   batch_input_shape=(height, width))))
    return pixels, mask, samples


def run_ours(model, pixels, samples):
    """The last layer's class logits and boxes, the first references, the first stage's
    class-agnostic logits (or None)."""
    with torch.no_grad():
        hidden, references, enc_class, _ = model.forward_transformer(
            model.extract_feat(pixels), samples)
        classes, boxes = model.bbox_head(hidden, references)
    return classes[-1], boxes[-1], references[0], None if enc_class is None else enc_class[..., 0]


def assert_same_outputs(hf, ours, class_rows=COCO_CATEGORY_IDS, shapes=((96, 128), (72, 100))):
    pixels, mask, samples = padded_batch(shapes)
    with torch.no_grad():
        expected = hf(pixel_values=pixels, pixel_mask=mask)
    logits, boxes, reference, objectness = run_ours(ours, pixels, samples)
    if hf.config.two_stage:  # the same proposals, picked by the same objectness
        torch.testing.assert_close(objectness, expected.enc_outputs_class[..., 0],
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(reference, expected.init_reference_points, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, expected.logits[..., class_rows], rtol=0, atol=1e-5)
    torch.testing.assert_close(boxes, expected.pred_boxes, rtol=0, atol=1e-6)


def write_config(cfg, path):
    cfg.dump(str(path))
    return str(path)


@pytest.mark.parametrize('variant', VARIANTS)
def test_hf_checkpoint_gives_the_same_outputs(variant, tmp_path):
    """A folder written by save_pretrained (model.safetensors), refinement heads untied as the
    hub's checkpoints of the authors' models have them; --config checks the architecture."""
    hf = hf_model(variant, tie_word_embeddings=False)
    hf.save_pretrained(tmp_path / 'hf')
    cfg = our_config(variant)
    HF_TO_OURS.main([str(tmp_path / 'hf'), str(tmp_path / 'ours.pth'),
                     '--config', write_config(cfg, tmp_path / 'config.py')])
    checkpoint = torch.load(tmp_path / 'ours.pth', weights_only=True)
    ours = build_ours(cfg)
    ours.load_state_dict(checkpoint['state_dict'], strict=True)
    assert_same_outputs(hf, ours)
    assert len(checkpoint['meta']['dataset_meta']['classes']) == 80


def test_hf_tied_refinement_class_heads(tmp_path):
    """transformers 5.x ties a refinement model's class heads to the first and writes that one
    only (its box heads only as the decoder's aliases): the converter fills them in."""
    hf = hf_model('refine')
    hf.save_pretrained(tmp_path / 'hf')
    config, state_dict = load_hf_folder(str(tmp_path / 'hf'))
    assert 'class_embed.1.weight' not in state_dict and 'bbox_embed.1.layers.0.weight' not in \
        state_dict
    ours = build_ours(our_config('refine'))
    ours.load_state_dict(hf_to_mmdeform(state_dict, config), strict=True)
    assert_same_outputs(hf, ours)


def test_hf_pytorch_model_bin_with_transformers_5_names(tmp_path):
    """pytorch_model.bin, here a state dict as transformers 5.x holds it in memory (o_proj,
    mlp.fc1, backbone.model), read with the safe unpickler."""
    hf = hf_model('two_stage', tie_word_embeddings=False)
    (tmp_path / 'hf').mkdir()
    hf.config.to_json_file(tmp_path / 'hf' / 'config.json')
    assert any('.mlp.fc1.' in k for k in hf.state_dict())
    torch.save(hf.state_dict(), tmp_path / 'hf' / 'pytorch_model.bin')
    HF_TO_OURS.main([str(tmp_path / 'hf'), str(tmp_path / 'ours.pth')])
    ours = build_ours(our_config('two_stage'))
    ours.load_state_dict(torch.load(tmp_path / 'ours.pth', weights_only=True)['state_dict'],
                         strict=True)
    assert_same_outputs(hf, ours)


@pytest.mark.parametrize('variant', VARIANTS)
def test_round_trip_ours_hf_ours(variant, tmp_path):
    """Our checkpoint -> a folder from_pretrained loads, which computes what ours does -> our
    checkpoint again, every tensor equal."""
    cfg = our_config(variant)
    ours = perturbed(build_ours(cfg))
    names = [f'class {i}' for i in range(80)]
    torch.save(dict(state_dict=ours.state_dict(), meta=dict(dataset_meta=dict(classes=names))),
               tmp_path / 'ours.pth')
    config = write_config(cfg, tmp_path / 'config.py')
    OURS_TO_HF.main([str(tmp_path / 'ours.pth'), str(tmp_path / 'hf'), config])

    hf = DeformableDetrForObjectDetection.from_pretrained(tmp_path / 'hf').eval()
    assert hf.config.id2label[79] == 'class 79'
    assert_same_outputs(hf, ours, class_rows=slice(None))

    HF_TO_OURS.main([str(tmp_path / 'hf'), str(tmp_path / 'back.pth'), '--config', config])
    back = torch.load(tmp_path / 'back.pth', weights_only=True)
    assert set(back['state_dict']) == set(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(back['state_dict'][key], value), key
    assert list(back['meta']['dataset_meta']['classes']) == names


def test_round_trip_with_timm_names(tmp_path):
    """--timm-backbone writes the backbone under timm's names (torchvision's), as the hub does."""
    cfg = our_config('two_stage')
    ours = perturbed(build_ours(cfg))
    torch.save(ours.state_dict(), tmp_path / 'ours.pth')
    config = write_config(cfg, tmp_path / 'config.py')
    OURS_TO_HF.main([str(tmp_path / 'ours.pth'), str(tmp_path / 'hf'), config, '--timm-backbone'])
    hf_config, hf_state = load_hf_folder(str(tmp_path / 'hf'))
    assert hf_config['use_timm_backbone'] and hf_config['backbone'] == 'resnet18'
    assert torch.equal(hf_state['model.backbone.conv_encoder.model.layer4.1.bn2.running_var'],
                       ours.state_dict()['backbone.layer4.1.bn2.running_var'])
    back = hf_to_mmdeform(hf_state, hf_config)
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())


def timm_resnet50_names():
    """timm's resnet50 (features_only) parameter and buffer names, from its layout: a stem
    conv1/bn1 and Bottleneck blocks conv1-3/bn1-3, a downsample conv + BN in each first block."""
    names = {'conv1.weight': (64, 3, 7, 7)}
    bn = ('weight', 'bias', 'running_mean', 'running_var')
    names.update({f'bn1.{p}': (64, ) for p in bn})
    cin = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
        for block in range(blocks):
            prefix = f'layer{stage}.{block}.'
            shapes = [(width, cin if block == 0 else 4 * width, 1, 1), (width, width, 3, 3),
                      (4 * width, width, 1, 1)]
            for conv, shape in enumerate(shapes, 1):
                names[f'{prefix}conv{conv}.weight'] = shape
                names.update({f'{prefix}bn{conv}.{p}': (shape[0], ) for p in bn})
            if block == 0:
                names[f'{prefix}downsample.0.weight'] = (4 * width, cin, 1, 1)
                names.update({f'{prefix}downsample.1.{p}': (4 * width, ) for p in bn})
        cin = 4 * width
    return names


def test_timm_backbone_layout(tmp_path):
    """A hub-style checkpoint (transformers 4.x config: use_timm_backbone, backbone resnet50)
    with timm's key names loads strictly into our ResNet-50 model, each tensor where it
    belongs."""
    bottleneck = ResNetConfig(out_features=['stage2', 'stage3', 'stage4'])
    hf = DeformableDetrForObjectDetection(DeformableDetrConfig(
        backbone_config=bottleneck, num_labels=91, **SMALL))
    hf.save_pretrained(tmp_path / 'hf')
    _, state_dict = load_hf_folder(str(tmp_path / 'hf'))
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith('model.backbone.')}
    g = torch.Generator().manual_seed(0)
    timm = {name: torch.rand(shape, generator=g) for name, shape in timm_resnet50_names().items()}
    state_dict.update({'model.backbone.conv_encoder.model.' + k: v for k, v in timm.items()})
    config = dict(model_type='deformable_detr', use_timm_backbone=True, backbone='resnet50',
                  dilation=False, id2label={str(i): f'id {i}' for i in range(91)}, **SMALL)

    cfg = our_config('multi_scale')
    cfg.model.backbone.depth = 50
    cfg.model.neck.in_channels = [512, 1024, 2048]
    ours = build_ours(cfg)
    ours.load_state_dict(hf_to_mmdeform(state_dict, config), strict=True)
    for name, value in timm.items():
        assert torch.equal(ours.state_dict()['backbone.' + name], value), name


def test_config_that_differs_is_refused(tmp_path, capsys):
    hf_model('multi_scale').save_pretrained(tmp_path / 'hf')
    config = write_config(our_config('single_scale'), tmp_path / 'config.py')
    with pytest.raises(SystemExit, match='num_feature_levels: Hugging Face 4, ours 1'):
        HF_TO_OURS.main([str(tmp_path / 'hf'), str(tmp_path / 'ours.pth'), '--config', config])
    assert not (tmp_path / 'ours.pth').exists()
    # without --config it converts, and says which of ours is closest and how it differs
    HF_TO_OURS.main([str(tmp_path / 'hf'), str(tmp_path / 'ours.pth')])
    out = capsys.readouterr().out
    assert 'the closest, configs/deformable_detr_r50.py, differs in' in out
    assert 'd_model: Hugging Face 64, ours 256' in out


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='no config.json'):
        load_hf_folder(str(tmp_path))
    (tmp_path / 'config.json').write_text(json.dumps(dict(model_type='deformable_detr')))
    with pytest.raises(FileNotFoundError, match='no model.safetensors'):
        load_hf_folder(str(tmp_path))
    (tmp_path / 'config.json').write_text(json.dumps(dict(model_type='detr')))
    with pytest.raises(ValueError, match="'detr' model"):
        load_hf_folder(str(tmp_path))


def test_inconsistent_weights_are_named(tmp_path):
    hf = hf_model('refine', tie_word_embeddings=False)
    hf.save_pretrained(tmp_path / 'hf')
    config, state_dict = load_hf_folder(str(tmp_path / 'hf'))
    alias = 'model.decoder.bbox_embed.1.layers.0.weight'
    with pytest.raises(ValueError, match=alias):
        hf_to_mmdeform(dict(state_dict, **{alias: state_dict[alias] + 1}), config)
    del state_dict['model.decoder.layers.1.self_attn.k_proj.weight']
    with pytest.raises(KeyError, match='k projection of model.decoder.layers.1.self_attn'):
        hf_to_mmdeform(state_dict, config)


def test_export_refuses_a_checkpoint_of_another_config(tmp_path):
    torch.save(build_ours(our_config('refine')).state_dict(), tmp_path / 'ours.pth')
    config = write_config(our_config('two_stage'), tmp_path / 'config.py')
    with pytest.raises(RuntimeError, match='memory_trans_fc'):
        OURS_TO_HF.main([str(tmp_path / 'ours.pth'), str(tmp_path / 'hf'), config])


def test_hub_sized_two_stage_checkpoint(tmp_path, capsys):
    """At the hub's size (ResNet-50 of transformers' layout, 256 channels, 6 + 6 layers, 300
    queries, 91 classes) the tool names configs/deformable_detr_r50_2stage.py, whose model
    computes what Hugging Face's does."""
    config = DeformableDetrConfig(backbone_config=ResNetConfig(
        out_features=['stage2', 'stage3', 'stage4']), num_labels=91, with_box_refine=True,
        two_stage=True, tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = perturbed(DeformableDetrForObjectDetection(config).eval())
    with torch.no_grad():
        hf.model.decoder.bbox_embed.load_state_dict(hf.bbox_embed.state_dict())
        hf.model.decoder.class_embed.load_state_dict(hf.class_embed.state_dict())
    hf.save_pretrained(tmp_path / 'hf')
    HF_TO_OURS.main([str(tmp_path / 'hf'), str(tmp_path / 'ours.pth')])
    assert 'It is configs/deformable_detr_r50_2stage.py' in capsys.readouterr().out
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'deformable_detr_r50_2stage.py'))
    cfg.model.backbone.init_cfg = None
    ours = build_ours(cfg)
    ours.load_state_dict(torch.load(tmp_path / 'ours.pth', weights_only=True)['state_dict'],
                         strict=True)
    assert_same_outputs(hf, ours, shapes=((256, 352), (224, 320)))  # > 300 proposals


def test_demo_model_exports(tmp_path):
    """The demo's model (a half-width ResNet-18, 5 shapes classes) exports too, its class names
    from the config's dataset."""
    path = os.path.join(ROOT, 'configs', 'demo', 'deformable_detr_tiny_2stage_shapes.py')
    ours = perturbed(build_ours(Config.fromfile(path)))
    torch.save(ours.state_dict(), tmp_path / 'ours.pth')
    OURS_TO_HF.main([str(tmp_path / 'ours.pth'), str(tmp_path / 'hf'), path])
    hf = DeformableDetrForObjectDetection.from_pretrained(tmp_path / 'hf').eval()
    assert hf.config.backbone_config.hidden_sizes == [32, 64, 128, 256]
    assert list(hf.config.id2label.values()) == ['circle', 'square', 'triangle', 'cross', 'ring']
    assert_same_outputs(hf, ours, class_rows=slice(None))
