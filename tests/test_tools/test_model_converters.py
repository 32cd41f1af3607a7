"""The checkpoint converters produce state dicts that load into our models, value for value."""
import os

import pytest
import torch
import torch.nn.functional as F
from mmdet.datasets import CocoDataset
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from tools_loader import load_tool

from mmdeform.converters import (COCO_CATEGORY_IDS, COCO_CLASSES, category_ids_to_classes,
                                 mmdeform_to_official, mmdet_to_mmdeform, official_to_mmdeform,
                                 save_converted_checkpoint)
from mmdeform.registry import MODELS
from mmdeform.utils import register_all_modules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def build(config, **model):
    register_all_modules()
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', config))
    cfg.merge_from_dict(dict(model=dict(
        model, backbone=dict(depth=18, init_cfg=None), neck=dict(in_channels=[128, 256, 512]),
        encoder=dict(num_layers=2), decoder=dict(num_layers=2), num_queries=10)))
    with DefaultScope.overwrite_default_scope('mmdeform'):
        return MODELS.build(cfg.model)


def official_state_dict(layers=2, two_stage=False, refine=False):
    """Random tensors under the authors' key names (their main.py/deformable_detr.py), built
    from their layout, not from our converter."""
    g = torch.Generator().manual_seed(0)
    sd = {}

    def add(key, *shape):
        # fan-in scaled, positive variances: a forward pass stays finite
        value = torch.randn(*shape, generator=g)
        if len(shape) > 1:
            value /= torch.tensor(shape[1:]).prod().sqrt()
        sd[key] = value.abs() + 0.5 if key.endswith('running_var') else value

    resnet18 = {'conv1.weight': (64, 3, 7, 7)}
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        resnet18[f'bn1.{name}'] = (64, )
    for stage, (cin, cout) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512)], 1):
        for block in range(2):
            c_in = cin if block == 0 else cout
            resnet18[f'layer{stage}.{block}.conv1.weight'] = (cout, c_in, 3, 3)
            resnet18[f'layer{stage}.{block}.conv2.weight'] = (cout, cout, 3, 3)
            for bn in ('bn1', 'bn2'):
                for name in ('weight', 'bias', 'running_mean', 'running_var'):
                    resnet18[f'layer{stage}.{block}.{bn}.{name}'] = (cout, )
            if block == 0 and stage > 1:
                resnet18[f'layer{stage}.0.downsample.0.weight'] = (cout, cin, 1, 1)
                for name in ('weight', 'bias', 'running_mean', 'running_var'):
                    resnet18[f'layer{stage}.0.downsample.1.{name}'] = (cout, )
    for key, shape in resnet18.items():
        add('backbone.0.body.' + key, *shape)
    for level, cin in enumerate([128, 256, 512]):
        add(f'input_proj.{level}.0.weight', 256, cin, 1, 1)
        add(f'input_proj.{level}.0.bias', 256)
        add(f'input_proj.{level}.1.weight', 256)
        add(f'input_proj.{level}.1.bias', 256)
    add('input_proj.3.0.weight', 256, 512, 3, 3)
    add('input_proj.3.0.bias', 256)
    add('input_proj.3.1.weight', 256)
    add('input_proj.3.1.bias', 256)
    add('transformer.level_embed', 4, 256)
    msda = dict(sampling_offsets=256, attention_weights=128, value_proj=256, output_proj=256)
    for i in range(layers):
        for prefix in (f'transformer.encoder.layers.{i}.self_attn',
                       f'transformer.decoder.layers.{i}.cross_attn'):
            for name, out in msda.items():
                add(f'{prefix}.{name}.weight', out, 256)
                add(f'{prefix}.{name}.bias', out)
        for coder, norms in (('encoder', 2), ('decoder', 3)):
            prefix = f'transformer.{coder}.layers.{i}'
            add(f'{prefix}.linear1.weight', 1024, 256)
            add(f'{prefix}.linear1.bias', 1024)
            add(f'{prefix}.linear2.weight', 256, 1024)
            add(f'{prefix}.linear2.bias', 256)
            for n in range(1, norms + 1):
                add(f'{prefix}.norm{n}.weight', 256)
                add(f'{prefix}.norm{n}.bias', 256)
        add(f'transformer.decoder.layers.{i}.self_attn.in_proj_weight', 768, 256)
        add(f'transformer.decoder.layers.{i}.self_attn.in_proj_bias', 768)
        add(f'transformer.decoder.layers.{i}.self_attn.out_proj.weight', 256, 256)
        add(f'transformer.decoder.layers.{i}.self_attn.out_proj.bias', 256)
    # Without refinement their heads are one module listed once per layer: equal tensors.
    for h in range(layers + int(two_stage) if refine else layers):
        add(f'class_embed.{h}.weight', 91, 256)
        add(f'class_embed.{h}.bias', 91)
        for j, (out, cin) in enumerate([(256, 256), (256, 256), (4, 256)]):
            add(f'bbox_embed.{h}.layers.{j}.weight', out, cin)
            add(f'bbox_embed.{h}.layers.{j}.bias', out)
        if not refine and h > 0:
            for key in [k for k in sd if k.startswith(('class_embed.0.', 'bbox_embed.0.'))]:
                sd[key.replace('.0.', f'.{h}.', 1)] = sd[key]
        if refine:  # the decoder's aliases of the refinement heads
            sd[f'transformer.decoder.class_embed.{h}.weight'] = sd[f'class_embed.{h}.weight']
            sd[f'transformer.decoder.bbox_embed.{h}.layers.0.weight'] = \
                sd[f'bbox_embed.{h}.layers.0.weight']
    if two_stage:
        add('transformer.enc_output.weight', 256, 256)
        add('transformer.enc_output.bias', 256)
        add('transformer.enc_output_norm.weight', 256)
        add('transformer.enc_output_norm.bias', 256)
        add('transformer.pos_trans.weight', 512, 512)
        add('transformer.pos_trans.bias', 512)
        add('transformer.pos_trans_norm.weight', 512)
        add('transformer.pos_trans_norm.bias', 512)
    else:
        add('query_embed.weight', 10, 512)
        add('transformer.reference_points.weight', 2, 256)
        add('transformer.reference_points.bias', 2)
    return sd


def test_official_one_stage_loads_strictly():
    theirs = official_state_dict()
    ours = category_ids_to_classes(official_to_mmdeform(theirs))
    model = build('deformable_detr_r50.py')
    model.load_state_dict(ours, strict=True)
    sd = model.state_dict()
    # Spot checks of the renames whose order is easy to get wrong.
    assert torch.equal(sd['decoder.layers.1.norms.0.weight'],
                       theirs['transformer.decoder.layers.1.norm2.weight'])
    assert torch.equal(sd['decoder.layers.1.norms.1.weight'],
                       theirs['transformer.decoder.layers.1.norm1.weight'])
    assert torch.equal(sd['neck.extra_convs.0.conv.weight'], theirs['input_proj.3.0.weight'])
    assert torch.equal(sd['bbox_head.reg_branches.0.4.weight'],
                       theirs['bbox_embed.0.layers.2.weight'])
    assert torch.equal(sd['backbone.layer2.0.downsample.1.running_var'],
                       theirs['backbone.0.body.layer2.0.downsample.1.running_var'])
    # Class 0 of ours (person) is COCO category id 1; class 79 (toothbrush) is id 90.
    assert torch.equal(sd['bbox_head.cls_branches.0.weight'][0], theirs['class_embed.0.weight'][1])
    assert torch.equal(sd['bbox_head.cls_branches.0.bias'][79], theirs['class_embed.0.bias'][90])


def test_official_two_stage_loads_strictly():
    theirs = official_state_dict(two_stage=True, refine=True)
    ours = category_ids_to_classes(official_to_mmdeform(theirs))
    model = build('deformable_detr_r50_2stage.py')
    model.load_state_dict(ours, strict=True)
    assert torch.equal(model.state_dict()['pos_trans_fc.weight'],
                       theirs['transformer.pos_trans.weight'])


def padded_batch(shapes=((96, 128), (64, 96))):
    """Two normalized images padded into one batch, and their samples."""
    g = torch.Generator().manual_seed(1)
    height, width = max(h for h, _ in shapes), max(w for _, w in shapes)
    inputs = torch.zeros(len(shapes), 3, height, width)
    samples = []
    for image, (h, w) in zip(inputs, shapes):
        image[:, :h, :w] = torch.randn(3, h, w, generator=g)
        samples.append(DetDataSample(metainfo=dict(img_shape=(h, w), batch_input_shape=(height,
                                                                                       width))))
    return inputs, samples


def test_official_two_stage_keeps_the_objectness_row():
    """The first-stage branch ranks proposals by their class-agnostic row 0: the converted model
    picks the proposals that row picks, not those of category id 1 (person)."""
    theirs = official_state_dict(two_stage=True, refine=True)
    model = build('deformable_detr_r50_2stage.py')
    model.load_state_dict(category_ids_to_classes(official_to_mmdeform(theirs)), strict=True)
    model.eval()
    memory = {}
    model.memory_trans_norm.register_forward_hook(lambda m, i, out: memory.update(out=out))
    inputs, samples = padded_batch()
    with torch.no_grad():
        _, references, enc_class, enc_boxes = model.forward_transformer(
            model.extract_feat(inputs), samples)

    weight, bias = theirs['class_embed.2.weight'], theirs['class_embed.2.bias']  # 2 layers + 1
    objectness = F.linear(memory['out'], weight[0:1], bias[0:1])[..., 0]
    torch.testing.assert_close(enc_class[..., 0], objectness)
    chosen = objectness.topk(model.num_queries, dim=1).indices
    expected = enc_boxes.gather(1, chosen[..., None].expand(-1, -1, 4))
    torch.testing.assert_close(references[0], expected)
    # What the defect did: rank by the row of category id 1, which picks other proposals.
    person = F.linear(memory['out'], weight[1:2], bias[1:2])[..., 0]
    assert set(person.topk(model.num_queries, dim=1).indices[0].tolist()) != \
        set(chosen[0].tolist())
    # The first stage's rows 1..79 stay its trained negatives, not category rows.
    assert torch.equal(model.bbox_head.cls_branches[2].weight, weight[:80])
    assert torch.equal(model.bbox_head.cls_branches[0].weight, theirs['class_embed.0.weight'][
        torch.tensor(COCO_CATEGORY_IDS)])


def test_official_layout_round_trip_is_exact():
    """ours -> the authors' layout -> ours gives every tensor back (the Hugging Face export goes
    through the authors' layout)."""
    for config in ('deformable_detr_r50.py', 'deformable_detr_r50_2stage.py',
                   'deformable_detr_r50_single_scale.py'):
        model = build(config)
        model.init_weights()  # no uninitialized memory, whose NaNs would never equal
        ours = model.state_dict()
        back = official_to_mmdeform(mmdeform_to_official(ours))
        assert set(back) == set(ours), config
        assert all(torch.equal(back[k], ours[k]) for k in ours if 'num_batches_tracked' not in k)


def test_official_converter_command(tmp_path):
    src, dst = tmp_path / 'theirs.pth', tmp_path / 'ours.pth'
    torch.save(dict(model=official_state_dict(two_stage=True, refine=True)), src)
    load_tool('model_converters/official_to_mmdeform.py').main([str(src), str(dst)])
    build('deformable_detr_r50_2stage.py').load_state_dict(
        torch.load(dst, weights_only=True)['state_dict'], strict=True)


def test_official_unknown_key_is_named():
    theirs = official_state_dict()
    theirs['transformer.something_new.weight'] = torch.zeros(1)
    try:
        official_to_mmdeform(theirs)
    except KeyError as error:
        assert 'transformer.something_new.weight' in str(error)
    else:
        raise AssertionError('an unknown key must be refused')


def test_mmdet_converter_refuses_other_detectors():
    try:
        mmdet_to_mmdeform({'backbone.conv1.weight': torch.zeros(1)})
    except ValueError as error:
        assert 'Deformable DETR' in str(error)
    else:
        raise AssertionError('a non-Deformable-DETR checkpoint must be refused')


def test_mmdet_converter_command_round_trip(tmp_path):
    model = build('deformable_detr_r50_refine.py')
    src, dst = tmp_path / 'mmdet.pth', tmp_path / 'ours.pth'
    # What mmdet's CheckpointHook writes, with mmdet's neck (no conv bias).
    state_dict = {k: v for k, v in model.state_dict().items()
                  if not (k.startswith('neck.') and k.endswith('conv.bias'))}
    torch.save(dict(state_dict=state_dict, optimizer={}, meta=dict(epoch=3)), src)
    load_tool('model_converters/mmdet_to_mmdeform.py').main([str(src), str(dst)])
    converted = torch.load(dst, weights_only=True)
    assert set(converted) == {'state_dict', 'meta'}
    model.load_state_dict(converted['state_dict'], strict=True)
    assert torch.equal(model.neck.convs[0].conv.bias, torch.zeros(256))


def test_converted_checkpoints_name_their_classes(tmp_path):
    """One metadata policy: the class names whenever they are known, COCO's for the authors'
    models; none where they are not known; names that do not fit the class rows refused."""
    official, ours = tmp_path / 'theirs.pth', tmp_path / 'ours.pth'
    torch.save(dict(model=official_state_dict()), official)
    load_tool('model_converters/official_to_mmdeform.py').main([str(official), str(ours)])
    meta = torch.load(ours, weights_only=True)['meta']
    assert meta['dataset_meta']['classes'] == CocoDataset.METAINFO['classes']
    assert meta['converted_from'] == str(official)

    state_dict = build('deformable_detr_r50_refine.py').state_dict()
    mmdet = load_tool('model_converters/mmdet_to_mmdeform.py')
    for dataset_meta, expected in ((dict(classes=COCO_CLASSES, palette=[]), COCO_CLASSES),
                                   (None, None)):
        torch.save(dict(state_dict=state_dict, meta=dict(dataset_meta=dataset_meta)), official)
        mmdet.main([str(official), str(ours)])
        meta = torch.load(ours, weights_only=True)['meta']
        assert (meta.get('dataset_meta') or {}).get('classes') == expected

    with pytest.raises(ValueError, match='3 class names for the 80 classes'):
        save_converted_checkpoint(state_dict, ours, 'somewhere', ['a', 'b', 'c'])
