"""tools/misc/publish_model.py: a training checkpoint becomes weights and meta that plain
torch.load(weights_only=True) reads in a fresh process (no mmdeform, no allow-list), named after
its sha256, and mmdet's DetInferencer runs it as it runs the training checkpoint."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY_DETR_CONFIG
from mmdet.apis import DetInferencer
from tools_loader import load_tool

from mmdeform.utils import load_checkpoint_file, save_checkpoint_file

publish_model = load_tool('misc/publish_model.py')

# What a fresh interpreter reads of each file with torch's safe unpickler and its default (empty)
# allow-list: its keys, or the error.
READ_PLAINLY = '''
import json, sys, torch
for path in sys.argv[1:]:
    try:
        checkpoint = torch.load(path, weights_only=True)
        print(json.dumps(dict(keys=sorted(checkpoint), meta=checkpoint.get('meta'),
                              tensors=len(checkpoint.get('state_dict', {})))))
    except Exception as error:
        print(json.dumps(dict(error=type(error).__name__)))
assert 'mmdeform' not in sys.modules and 'mmengine' not in sys.modules
'''


@pytest.fixture(scope='module')
def published(trained_tiny_checkpoint, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('published') / 'tiny_detr.pth')
    publish_model.main([trained_tiny_checkpoint, out])
    written = os.listdir(os.path.dirname(out))
    assert len(written) == 1, written  # the hashed file alone
    return os.path.join(os.path.dirname(out), written[0])


def test_published_loads_with_plain_torch_and_is_named_by_its_hash(published,
                                                                   trained_tiny_checkpoint):
    result = subprocess.run([sys.executable, '-c', READ_PLAINLY, published,
                             trained_tiny_checkpoint], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=''))
    assert result.returncode == 0, result.stderr[-3000:]
    read_published, read_trained = map(json.loads, result.stdout.splitlines())
    # the training checkpoint needs mmengine's globals; the published one nothing
    assert read_trained == dict(error='UnpicklingError')
    assert read_published['keys'] == ['meta', 'state_dict']
    assert read_published['meta']['dataset_meta']['classes'] == ['square', 'bar']

    with open(published, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert os.path.basename(published) == f'tiny_detr-{digest[:8]}.pth'

    trained = load_checkpoint_file(trained_tiny_checkpoint)
    kept = torch.load(published, weights_only=True)
    assert read_published['tensors'] == len(trained['state_dict'])
    assert list(kept['state_dict']) == list(trained['state_dict'])
    assert all(torch.equal(kept['state_dict'][key], value)
               for key, value in trained['state_dict'].items())
    assert kept['meta'] == trained['meta']


def test_inferencer_runs_the_published_checkpoint(published, trained_tiny_checkpoint):
    image = np.random.RandomState(1).randint(0, 256, (48, 64, 3), dtype=np.uint8)
    detections = [
        DetInferencer(model=TINY_DETR_CONFIG, weights=weights, device='cpu', scope='mmdeform',
                      show_progress=False)(image, return_datasamples=True)['predictions'][0]
        for weights in (published, trained_tiny_checkpoint)]
    assert detections[0].pred_instances.scores.numel() > 0
    for key in ('scores', 'bboxes', 'labels'):
        assert torch.equal(detections[0].pred_instances[key], detections[1].pred_instances[key])


def test_numpy_meta_becomes_plain_and_other_objects_are_named(tmp_path):
    src = str(tmp_path / 'in.pth')
    meta = dict(best=np.float64(0.5), counts=np.arange(3), nested=[(np.int64(2), 'a')])
    save_checkpoint_file(dict(state_dict={'w': torch.ones(2)}, meta=meta), src)
    out = publish_model.publish(src, str(tmp_path / 'out.pth'))
    kept = torch.load(out, weights_only=True)
    assert kept['meta'] == dict(best=0.5, counts=[0, 1, 2], nested=[(2, 'a')])
    assert type(kept['meta']['best']) is float and type(kept['meta']['nested'][0][0]) is int

    from mmengine.logging import HistoryBuffer
    save_checkpoint_file(dict(state_dict={}, meta=dict(hub=HistoryBuffer([0.5], [1]))), src)
    with pytest.raises(TypeError, match=r"meta\['hub'\] is a mmengine.logging.history_buffer."
                                        r'HistoryBuffer, .* --save-keys'):
        publish_model.publish(src, str(tmp_path / 'out.pth'))
    with pytest.raises(KeyError, match=r"has no \['optimizer'\]"):
        publish_model.publish(src, str(tmp_path / 'out.pth'), ('state_dict', 'optimizer'))
