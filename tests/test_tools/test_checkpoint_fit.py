"""A checkpoint that does not fit the config is refused, by tools/test.py before it evaluates and
by init_detector (the demo, drawing, export and benchmark tools), naming the missing,
unexpected, reshaped and differently shared tensors and the config of ours it fits."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from tools_loader import load_tool, run_tool

from mmdeform.apis import init_detector
from mmdeform.utils import register_all_modules, save_checkpoint_file
from mmdeform.utils.checkpoint_fit import build_on_meta

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = osp.join(ROOT, 'tests', 'test_apis', 'tiny_deformable_detr.py')
test_tool = load_tool('test.py')


def config(name):
    return osp.join(ROOT, 'configs', name)


def checkpoint_of(config_path, path, **meta):
    """A checkpoint with the tensors of the config's model, each a zero expanded to its shape
    (a few bytes on disk), and ``meta``."""
    register_all_modules()
    model = build_on_meta(Config.fromfile(config_path))
    state_dict = {key: torch.zeros((), dtype=tensor.dtype).expand(tensor.shape)
                  for key, tensor in model.state_dict().items()}
    save_checkpoint_file(dict(state_dict=state_dict, meta=meta), path)
    return str(path)


@pytest.fixture(scope='module')
def two_stage_checkpoint(tmp_path_factory):
    return checkpoint_of(config('deformable_detr_r50_2stage.py'),
                         tmp_path_factory.mktemp('ckpt') / 'two_stage.pth')


def test_test_tool_refuses_a_two_stage_checkpoint_in_the_plain_config(two_stage_checkpoint,
                                                                      monkeypatch):
    with pytest.raises(ValueError) as error:
        run_tool(test_tool, monkeypatch, config('deformable_detr_r50.py'), two_stage_checkpoint)
    message = str(error.value)
    assert message.startswith(f'checkpoint {two_stage_checkpoint} does not fit the model of the '
                              f'config {config("deformable_detr_r50.py")}:')
    assert ('- 3 tensor(s) of the model are not in the checkpoint: query_embedding.weight; '
            'reference_points_fc.weight; reference_points_fc.bias\n') in message
    # the first stage's class and box branches (index 6) and the proposal layers
    assert '- 16 tensor(s) of the checkpoint are not in the model: bbox_head.cls_branches.6.' \
        in message
    assert message.endswith('The checkpoint fits configs/deformable_detr_r50_2stage.py.')


def test_test_tool_refuses_a_checkpoint_given_by_url(two_stage_checkpoint, monkeypatch):
    """A URL is fetched (here from a stand-in of mmengine's download) and checked alike."""
    fetched = []

    def download(url, map_location=None, **kwargs):
        fetched.append(url)
        return torch.load(two_stage_checkpoint, map_location=map_location)

    monkeypatch.setattr('mmengine.runner.checkpoint.load_url', download)
    url = 'https://download.example.com/two_stage.pth'
    with pytest.raises(ValueError, match=rf'^checkpoint {url} does not fit the model of the '
                       r'config .*deformable_detr_r50.py:(.|\n)*fits configs/'
                       r'deformable_detr_r50_2stage'):
        run_tool(test_tool, monkeypatch, config('deformable_detr_r50.py'), url)
    assert fetched == [url]


def test_test_tool_refuses_a_coco_checkpoint_in_a_finetuning_config(two_stage_checkpoint,
                                                                    monkeypatch):
    # FinetuneHook would make the checkpoint fit by re-initialising the class branches
    finetune = config('finetune/deformable_detr_r50_2stage_shapes.py')
    with pytest.raises(ValueError, match=r'- 14 tensor\(s\) have another shape: '
                       r'bbox_head.cls_branches.0.weight \(80, 256\) in the checkpoint, '
                       r'\(5, 256\) in the model; (.|\n)*fits configs/deformable_detr_r50_2stage'):
        run_tool(test_tool, monkeypatch, finetune, two_stage_checkpoint)


def test_test_tool_refuses_a_checkpoint_of_other_classes(tmp_path, monkeypatch):
    demo = config('demo/deformable_detr_tiny_shapes.py')
    classes = Config.fromfile(demo).test_dataloader.dataset.metainfo.classes
    reversed_classes = checkpoint_of(demo, tmp_path / 'reversed.pth',
                                     dataset_meta=dict(classes=classes[::-1]))
    with pytest.raises(ValueError, match=r"was trained with the classes \['ring', 'cross', "
                       r"'triangle', 'square', 'circle'\] \(the order of its labels\), but the "
                       r"test dataset of the config .*tiny_shapes.py has \['circle', "):
        run_tool(test_tool, monkeypatch, demo, reversed_classes)


def test_no_config_fits(tmp_path, monkeypatch):
    path = tmp_path / 'other.pth'
    save_checkpoint_file(dict(state_dict=dict(weight=torch.zeros(2))), path)
    with pytest.raises(ValueError, match='It fits none of the configs under .*configs'):
        run_tool(test_tool, monkeypatch, config('deformable_detr_r50.py'), str(path))


def two_layers(refine):
    """The tiny model with 2 decoder layers: 2 class and box branches, one without refinement."""
    return dict(model=dict(with_box_refine=refine, decoder=dict(num_layers=2)))


@pytest.fixture(scope='module')
def tiny_checkpoints(tmp_path_factory):
    """Checkpoints of the tiny model without and with box refinement, initialised and then
    changed a little, as training would (the branches start as copies of one another)."""
    folder = tmp_path_factory.mktemp('tiny')
    paths = {}
    for refine in (False, True):
        torch.manual_seed(0)
        model = init_detector(TINY, cfg_options=two_layers(refine))
        model.init_weights()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter), alpha=1e-3)
        paths[refine] = str(folder / f'refine_{refine}.pth')
        save_checkpoint_file(dict(state_dict=model.state_dict()), paths[refine])
    return paths


def test_shared_and_separate_branches_do_not_mix(tiny_checkpoints):
    init_detector(TINY, tiny_checkpoints[False], cfg_options=two_layers(False))  # fits
    # the last of the different branches would be loaded into the one shared
    with pytest.raises(ValueError, match=r'- 8 group\(s\) of tensors are one tensor in the model, '
                       r'but different tensors in the checkpoint: \[\'bbox_head.cls_branches'):
        init_detector(TINY, tiny_checkpoints[True], cfg_options=two_layers(False))
    with pytest.raises(ValueError, match=r'- 8 group\(s\) of tensors are one tensor in the '
                       r'checkpoint, but separate tensors in the model'):
        init_detector(TINY, tiny_checkpoints[False], cfg_options=two_layers(True))
