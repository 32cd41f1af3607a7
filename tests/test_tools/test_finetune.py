"""Fine-tuning (configs/finetune/, FinetuneHook): the two-stage config, shrunk, fine-tuned from an
80-class checkpoint to the 5 shapes classes, then evaluated; and the loading rules one by one."""
import copy
import os.path as osp
import uuid

import pytest
import torch
from detector_checks import shrink_model
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import bias_init_with_prob
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmdeform.datasets.shapes import generate_shapes_dataset
from mmdeform.engine.hooks import FinetuneHook, finetune_state_dict
from mmdeform.registry import HOOKS, MODELS
from mmdeform.utils import load_checkpoint_file, register_all_modules, save_checkpoint_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'finetune', 'deformable_detr_r50_2stage_shapes.py')
SHAPES = osp.join(ROOT, 'configs', '_base_', 'datasets', 'shapes_detection.py')
PRIOR = bias_init_with_prob(0.01)
# shrink_model's 2 decoder layers: class branches 0 and 1; branch 2 is the first stage's
DECODER_CLASS_BRANCHES = {f'bbox_head.cls_branches.{i}.{p}' for i in (0, 1)
                          for p in ('weight', 'bias')}
FIRST_STAGE_CLASS_BRANCH = ['bbox_head.cls_branches.2.weight', 'bbox_head.cls_branches.2.bias']


@HOOKS.register_module(force=True)
class LoadedStateHook(Hook):
    """Keeps a copy of the model's state when the training starts, i.e. once loaded."""
    priority = 'VERY_HIGH'

    def before_train(self, runner):
        self.state = copy.deepcopy(runner.model.state_dict())


def finetune_cfg(work_dir, data_root, load_from):
    """The fine-tuning config with the model shrunk, the shapes dataset's small image scales
    (the COCO scales of the config would upscale these small images 5x) and 1 epoch of 4
    batches of 2."""
    register_all_modules()
    cfg = shrink_model(Config.fromfile(CONFIG))
    shapes = Config.fromfile(SHAPES)
    cfg.merge_from_dict(dict(
        work_dir=str(work_dir), load_from=str(load_from), train_cfg=dict(max_epochs=1),
        train_dataloader=dict(batch_size=2, num_workers=0, persistent_workers=False,
                              dataset=dict(data_root=str(data_root),
                                           pipeline=shapes.train_pipeline)),
        val_dataloader=dict(num_workers=0, persistent_workers=False,
                            dataset=dict(data_root=str(data_root),
                                         pipeline=shapes.test_pipeline)),
        val_evaluator=dict(ann_file=osp.join(data_root, 'annotations', 'instances_val.json')),
        custom_hooks=[*Config.fromfile(CONFIG).custom_hooks, dict(type='LoadedStateHook')]))
    cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    return cfg


def coco_checkpoint(cfg, path):
    """An 80-class checkpoint of the config's model, its initial weights perturbed so that
    loaded tensors show, saved as an mmdet checkpoint converted without the neck's conv bias
    would be (one tensor missing) and with a one-stage tensor our two-stage model lacks (one to
    skip)."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.bbox_head.num_classes = 80
    with DefaultScope.overwrite_default_scope('mmdeform'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    state = {name: tensor + 0.01 * torch.randn_like(tensor) if tensor.is_floating_point()
             else tensor for name, tensor in model.state_dict().items()}
    del state['neck.convs.0.conv.bias']
    state['query_embedding.weight'] = torch.randn(8, 32)
    save_checkpoint_file(dict(state_dict=state, meta=dict(dataset_meta=None)), path)
    return state


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    generate_shapes_dataset(str(root), num_train=8, num_val=4, seed=0, size_range=(96, 128),
                            show_progress=False)
    return root


def finetune_hook(runner):
    return next(hook for hook in runner.hooks if isinstance(hook, FinetuneHook))


def runner_of(cfg):
    """A Runner of its own experiment: runners of one experiment share their message hub."""
    cfg = copy.deepcopy(cfg)
    cfg.experiment_name = uuid.uuid4().hex
    return Runner.from_cfg(cfg)


def test_finetune_from_80_classes_to_the_shapes(shapes, tmp_path):
    cfg = finetune_cfg(tmp_path / 'work_dir', shapes, tmp_path / 'coco.pth')
    coco = coco_checkpoint(cfg, tmp_path / 'coco.pth')
    runner = runner_of(cfg)
    runner.train()

    report = finetune_hook(runner).report
    loaded = next(hook for hook in runner.hooks if isinstance(hook, LoadedStateHook)).state
    assert set(report.reinitialised) == DECODER_CLASS_BRANCHES
    assert report.objectness_kept == FIRST_STAGE_CLASS_BRANCH
    assert report.skipped == {'query_embedding.weight': 'not in the model'}
    assert report.not_in_checkpoint == ['neck.convs.0.conv.bias']
    assert set(report.loaded) == loaded.keys() - DECODER_CLASS_BRANCHES - \
        set(FIRST_STAGE_CLASS_BRANCH) - {'neck.convs.0.conv.bias'}
    # backbone, neck, transformer and box branches as in the checkpoint
    assert any(name.startswith('backbone.') for name in report.loaded)
    assert 'bbox_head.reg_branches.2.4.weight' in report.loaded
    assert all(torch.equal(loaded[name], coco[name]) for name in report.loaded)
    # class branches: 5 rows with the prior, the first stage's row 0 from the checkpoint
    for name in DECODER_CLASS_BRANCHES:
        assert loaded[name].shape[0] == 5
    assert (loaded['bbox_head.cls_branches.0.bias'] == PRIOR).all()
    weight, bias = (loaded[name] for name in FIRST_STAGE_CLASS_BRANCH)
    assert torch.equal(weight[0], coco[FIRST_STAGE_CLASS_BRANCH[0]][0])
    assert bias[0] == coco[FIRST_STAGE_CLASS_BRANCH[1]][0] and (bias[1:] == PRIOR).all()
    assert not torch.equal(weight[1:], coco[FIRST_STAGE_CLASS_BRANCH[0]][1:5])
    assert (loaded['neck.convs.0.conv.bias'] == 0).all()  # as initialised

    # logged: each tensor not loaded as it is named once, on the fine-tuning lines
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        lines = [line for line in f if 'Fine-tuning' in line]
    names = [*DECODER_CLASS_BRANCHES, *FIRST_STAGE_CLASS_BRANCH, 'query_embedding.weight',
             'neck.convs.0.conv.bias']
    assert all(sum(line.count(name + ' ') + line.count(name + ',') + line.endswith(name + '\n')
                   for line in lines) == 1 for name in names), lines

    # trained: 4 iterations, then evaluated on the 4 val images
    assert runner.iter == 4
    assert 'val/coco/bbox_mAP' in runner.message_hub.log_scalars


def test_testing_and_resuming_a_finetuned_checkpoint_loads_it_as_it_is(shapes, tmp_path):
    cfg = finetune_cfg(tmp_path / 'work_dir', shapes, tmp_path / 'coco.pth')
    coco_checkpoint(cfg, tmp_path / 'coco.pth')
    runner_of(cfg).train()
    finetuned = tmp_path / 'work_dir' / 'epoch_1.pth'

    cfg.load_from = str(finetuned)
    tester = runner_of(cfg)
    metrics = tester.test()
    report = finetune_hook(tester).report
    assert not (report.reinitialised or report.objectness_kept or report.skipped
                or report.not_in_checkpoint)
    state = load_checkpoint_file(finetuned)['state_dict']
    assert all(torch.equal(tensor, state[name])
               for name, tensor in tester.model.state_dict().items())
    assert 'coco/bbox_mAP' in metrics

    cfg.merge_from_dict(dict(resume=True, train_cfg=dict(max_epochs=2)))
    resumed = runner_of(cfg)
    resumed.train()
    assert resumed.iter == 8 and not finetune_hook(resumed).report.reinitialised


def test_testing_with_the_finetune_config_loads_the_checkpoint_as_it_is(shapes, tmp_path):
    """Runner.test (tools/test.py) with the fine-tuning config and a checkpoint of 80 classes:
    the hook does nothing, nothing is re-initialised or taken from row 0: every tensor of the
    evaluated model is the checkpoint's, except those whose shape differs, which mmengine skips
    (and tools/test.py refuses)."""
    cfg = finetune_cfg(tmp_path / 'work_dir', shapes, tmp_path / 'coco.pth')
    coco = coco_checkpoint(cfg, tmp_path / 'coco.pth')
    tester = runner_of(cfg)
    tester.test()
    report = finetune_hook(tester).report
    assert not (report.loaded or report.reinitialised or report.objectness_kept)
    evaluated = tester.model.state_dict()
    other_shapes = {name for name, tensor in evaluated.items()
                    if name in coco and coco[name].shape != tensor.shape}
    assert other_shapes == DECODER_CLASS_BRANCHES | set(FIRST_STAGE_CLASS_BRANCH)
    assert all(torch.equal(tensor, coco[name]) for name, tensor in evaluated.items()
               if name in coco and name not in other_shapes)
    first_stage = evaluated[FIRST_STAGE_CLASS_BRANCH[1]]
    assert first_stage[0] != coco[FIRST_STAGE_CLASS_BRANCH[1]][0]
    with open(osp.join(tester.log_dir, f'{tester.timestamp}.log')) as f:
        assert 'Fine-tuning' not in f.read()


def state(**shapes):
    return {name: torch.randn(shape) for name, shape in shapes.items()}


def test_one_stage_checkpoint_into_a_two_stage_model():
    """No first stage in the checkpoint: no objectness row to keep, its branch and the
    proposal layers are left initialised, the learned queries skipped."""
    model = state(**{'bbox_head.cls_branches.0.weight': (5, 8),
                     'bbox_head.cls_branches.1.weight': (5, 8), 'memory_trans_fc.weight': (8, 8)})
    checkpoint = state(**{'bbox_head.cls_branches.0.weight': (80, 8),
                          'query_embedding.weight': (3, 16)})
    prepared, report = finetune_state_dict(model, checkpoint,
                                           objectness=['bbox_head.cls_branches.1.weight'])
    assert list(report.reinitialised) == ['bbox_head.cls_branches.0.weight']
    assert report.not_in_checkpoint == ['bbox_head.cls_branches.1.weight',
                                        'memory_trans_fc.weight']
    assert report.skipped == {'query_embedding.weight': 'not in the model'}
    assert not report.loaded and not report.objectness_kept
    # nothing to change: mmengine loads the checkpoint as it is, skipping what does not fit
    assert all(prepared[name] is checkpoint[name] for name in checkpoint)


def test_two_stage_checkpoint_objectness_and_other_mismatches():
    model = state(**{'bbox_head.cls_branches.6.weight': (5, 8),
                     'bbox_head.cls_branches.6.bias': (5, ), 'memory_trans_fc.weight': (8, 8),
                     'level_embed': (4, 8)})
    checkpoint = {'module.' + name: tensor for name, tensor in state(**{
        'bbox_head.cls_branches.6.weight': (80, 8), 'bbox_head.cls_branches.6.bias': (80, ),
        'memory_trans_fc.weight': (8, 8), 'level_embed': (3, 8)}).items()}
    objectness = ['bbox_head.cls_branches.6.weight', 'bbox_head.cls_branches.6.bias']
    prepared, report = finetune_state_dict(model, checkpoint, objectness=objectness)
    assert report.objectness_kept == objectness
    assert report.loaded == ['memory_trans_fc.weight']  # 'module.' dropped, as mmengine does
    assert report.skipped == {'level_embed': '(3, 8) in the checkpoint, (4, 8) here'}
    weight = prepared['bbox_head.cls_branches.6.weight']
    assert torch.equal(weight[0], checkpoint['module.bbox_head.cls_branches.6.weight'][0])
    assert torch.equal(weight[1:], model['bbox_head.cls_branches.6.weight'][1:])

    _, without = finetune_state_dict(model, checkpoint, objectness=())
    assert set(without.reinitialised) == set(objectness)
