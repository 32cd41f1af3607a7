"""torch's weights_only loading of mmengine checkpoints: resuming works, malicious pickles don't."""
import copy
import io
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from tools_toy_modules import toy_runner_cfg

from mmdeform.utils import (allow_mmengine_checkpoint_globals, register_all_modules,
                            register_checkpoint_loader)


@pytest.fixture
def empty_allow_list():
    """Start from torch's own allow-list and put the process-wide one back afterwards."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


def test_resume_runner_checkpoint_with_weights_only(tmp_path, empty_allow_list):
    cfg = toy_runner_cfg(tmp_path, max_epochs=1)
    runner = Runner(**copy.deepcopy(cfg))
    runner.train()
    checkpoint = tmp_path / 'epoch_1.pth'
    best_score = runner.message_hub.get_info('best_score')
    assert isinstance(best_score, np.floating)  # the numpy scalar of CheckpointHook's save_best

    # The problem: torch's default weights_only=True refuses mmengine's message hub.
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(checkpoint)

    allow_mmengine_checkpoint_globals()
    state = torch.load(checkpoint)  # torch's default weights_only=True
    loss_history = state['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss_history, HistoryBuffer)
    assert loss_history.data[0].dtype == np.float64 and loss_history.data[1].dtype == np.int64
    assert state['message_hub']['runtime_info']['best_score'] == best_score

    resumed = Runner(**toy_runner_cfg(tmp_path, max_epochs=2, resume=True))
    resumed.train()
    assert resumed.epoch == 2
    assert (tmp_path / 'epoch_2.pth').is_file()


def test_register_all_modules_allows_checkpoint_globals(empty_allow_list):
    register_all_modules(init_default_scope=False)
    assert HistoryBuffer in torch.serialization.get_safe_globals()


def test_allow_list_is_idempotent(empty_allow_list):
    allow_mmengine_checkpoint_globals()
    allowed = set(torch.serialization.get_safe_globals())
    allow_mmengine_checkpoint_globals()
    assert set(torch.serialization.get_safe_globals()) == allowed
    assert getattr not in allowed  # only a getattr narrowed to HistoryBuffer's statistics


@pytest.mark.parametrize('module', ['numpy.core.multiarray', 'numpy._core.multiarray'])
def test_numpy_1_and_2_module_paths(module, empty_allow_list):
    """A checkpoint names the numpy module of the numpy that saved it; both must load."""
    buffer = io.BytesIO()
    # The legacy format is one plain pickle, whose GLOBAL names can be rewritten in place.
    torch.save(dict(history=HistoryBuffer([1.5, 2.5], [1, 1]), score=np.float64(0.25)), buffer,
               _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    for saved_by in (b'numpy._core.multiarray', b'numpy.core.multiarray'):
        data = data.replace(saved_by, module.encode())
    assert module.encode() in data

    allow_mmengine_checkpoint_globals()
    state = torch.load(io.BytesIO(data))
    assert state['score'] == 0.25 and isinstance(state['score'], np.float64)
    np.testing.assert_array_equal(state['history'].data[0], [1.5, 2.5])
    assert state['history'].mean() == 2.0


class _RunsCommand:
    """Pickles as a call of ``function(*args)``, the way a malicious checkpoint would."""

    def __init__(self, function, *args):
        self.function = function
        self.args = args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize('make_payload', [
    lambda marker: _RunsCommand(os.system, f'touch {marker}'),
    lambda marker: _RunsCommand(subprocess.call, ['touch', str(marker)]),
    lambda marker: _RunsCommand(eval, f'open({str(marker)!r}, "w")'),
    # the narrowed getattr gives nothing but HistoryBuffer's statistics methods
    lambda marker: _RunsCommand(getattr, HistoryBuffer, '__init__'),
], ids=['os.system', 'subprocess.call', 'eval', 'getattr'])
def test_malicious_pickle_is_refused(tmp_path, make_payload):
    marker = tmp_path / 'pwned'
    checkpoint = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=make_payload(marker)), checkpoint)
    allow_mmengine_checkpoint_globals()

    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint)
    register_checkpoint_loader()
    with pytest.raises(ValueError, match=f'checkpoint {checkpoint} '):
        _load_checkpoint(str(checkpoint), map_location='cpu')  # what the Runner calls
    assert not marker.exists()
