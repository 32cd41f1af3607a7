"""mmdet's DetInferencer runs our configs and checkpoints (after `import mmdeform`, with
`scope='mmdeform'`): the detections of a checkpoint written by tools/train.py equal those of our
inference API on the same image, and every config's test pipeline is one it can rebuild."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from conftest import TINY_DETR_CONFIG
from mmdet.apis import DetInferencer
from mmengine.config import Config

from mmdeform.apis import inference_detector, init_detector
from mmdeform.models.detectors.deformable_detr import DeformableDETR

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(path for path in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                                            recursive=True) if '_base_' not in path)


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    """A 60x80 image of noise with a bright box, on disk and as loaded (BGR)."""
    pixels = np.random.RandomState(0).randint(0, 256, (60, 80, 3), dtype=np.uint8)
    pixels[10:30, 20:50] = 255
    path = str(tmp_path_factory.mktemp('image') / 'image.png')
    mmcv.imwrite(pixels, path)
    return path, pixels


@pytest.fixture(scope='module')
def inferencer(trained_tiny_checkpoint):
    return DetInferencer(model=TINY_DETR_CONFIG, weights=trained_tiny_checkpoint, device='cpu',
                         scope='mmdeform', show_progress=False)


def test_inferencer_builds_our_model_with_the_checkpoint(inferencer, trained_tiny_checkpoint):
    assert type(inferencer.model) is DeformableDETR
    ours = init_detector(TINY_DETR_CONFIG, trained_tiny_checkpoint)
    theirs = inferencer.model.state_dict()
    assert theirs.keys() == ours.state_dict().keys()
    assert all(torch.equal(theirs[key], value) for key, value in ours.state_dict().items())
    assert tuple(inferencer.model.dataset_meta['classes']) == ('square', 'bar')


@pytest.mark.parametrize('as_array', [False, True], ids=['file', 'array'])
def test_inferencer_detections_equal_our_inference_api(inferencer, trained_tiny_checkpoint,
                                                       image, as_array):
    path, pixels = image
    given = pixels if as_array else path
    theirs = inferencer(given, return_datasamples=True)['predictions'][0].pred_instances
    ours = inference_detector(init_detector(TINY_DETR_CONFIG, trained_tiny_checkpoint),
                              path).pred_instances
    assert len(ours) == 10 * 2  # every score of the 10 queries and 2 classes (max_per_img 100)
    torch.testing.assert_close(theirs.scores, ours.scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(theirs.bboxes, ours.bboxes, rtol=0, atol=1e-4)
    assert torch.equal(theirs.labels, ours.labels)


# A user's script: `import mmdeform` and nothing else of ours before mmdet's inferencer.
USER_SCRIPT = '''
import json, sys
import mmdeform
from mmdet.apis import DetInferencer
config, weights, image = sys.argv[1:]
inferencer = DetInferencer(model=config, weights=weights, device='cpu', scope='mmdeform')
found = inferencer(image, return_datasamples=True)['predictions'][0].pred_instances
print(json.dumps({key: found[key].tolist() for key in ('scores', 'bboxes', 'labels')}))
'''


def test_inferencer_in_a_fresh_process_after_import_mmdeform(trained_tiny_checkpoint, image):
    # Nothing but `import mmdeform` lets mmengine's loader read the training checkpoint.
    path, _ = image
    result = subprocess.run(
        [sys.executable, '-c', USER_SCRIPT, TINY_DETR_CONFIG, trained_tiny_checkpoint, path],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, osp.dirname(TINY_DETR_CONFIG)])))
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = json.loads(result.stdout.splitlines()[-1])
    ours = inference_detector(init_detector(TINY_DETR_CONFIG, trained_tiny_checkpoint),
                              path).pred_instances
    torch.testing.assert_close(torch.tensor(theirs['scores']), ours.scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(theirs['bboxes']), ours.bboxes, rtol=0, atol=1e-4)
    assert theirs['labels'] == ours.labels.tolist()


@pytest.mark.parametrize('config', CONFIGS, ids=[osp.relpath(c, ROOT) for c in CONFIGS])
def test_every_config_test_pipeline_runs_in_the_inferencer(inferencer, config, image):
    # DetInferencer finds the loader by mmcv's name and swaps in its own for files and arrays.
    pipeline = inferencer._init_pipeline(Config.fromfile(config))
    assert type(pipeline.transforms[0]).__name__ == 'InferencerLoader'
    path, pixels = image
    for given in (path, pixels):
        inputs = pipeline(given)['inputs']
        assert inputs.dtype == torch.uint8 and inputs.shape[0] == 3
