"""mmdeform.utils.read_scalars and tools/analysis_tools/plot_logs.py on hand-written logs and on
the log of a real (toy) training run."""
import json
import os
import os.path as osp

import matplotlib.image
import numpy as np
import pytest
from mmengine.runner import Runner
from tools_toy_modules import toy_runner_cfg
from tools_loader import load_tool

from mmdeform.utils import read_scalars, register_all_modules


def _write_run(work_dir, timestamp, records):
    folder = osp.join(work_dir, timestamp, 'vis_data')
    os.makedirs(folder)
    with open(osp.join(folder, 'scalars.json'), 'w') as f:
        f.writelines(json.dumps(record) + '\n' for record in records)


def _train(loss, epoch, iteration):
    return dict(lr=2e-4, loss=loss, time=0.5, epoch=epoch, iter=iteration, step=iteration)


def _val(mAP, epoch):
    return {'coco/bbox_mAP': mAP, 'data_time': 0.01, 'time': 0.25, 'step': epoch}


@pytest.fixture
def work_dir(tmp_path):
    """A training (4 iterations per epoch, logged every 2) interrupted in epoch 2 and resumed
    from the end of epoch 1, so that both runs log iteration 6."""
    _write_run(tmp_path, '20260101_000000', [
        _train(2.0, 1, 2), _train(1.5, 1, 4), _val(0.1, 1), _train(1.2, 2, 6)])
    _write_run(tmp_path, '20260101_010000', [_train(0.9, 2, 6), _train(0.8, 2, 8), _val(0.2, 2)])
    return str(tmp_path)


def test_read_scalars_of_a_work_dir(work_dir):
    curves = read_scalars(work_dir)
    assert sorted(curves) == ['coco/bbox_mAP', 'loss', 'lr', 'time', 'val/data_time',
                              'val/time']
    np.testing.assert_array_equal(curves['loss'].iters, [2, 4, 6, 8])
    np.testing.assert_array_equal(curves['loss'].values, [2.0, 1.5, 0.9, 0.8])  # resumed wins
    # validated after epochs 1 and 2, i.e. after iterations 4 and 8
    iters, values = curves['coco/bbox_mAP']
    np.testing.assert_array_equal(iters, [4, 8])
    np.testing.assert_array_equal(values, [0.1, 0.2])
    np.testing.assert_array_equal(curves['val/time'].values, [0.25, 0.25])
    np.testing.assert_array_equal(curves['time'].values, [0.5] * 4)
    assert curves['loss'].iters.dtype == np.int64


def test_read_scalars_of_one_run_or_file(work_dir):
    run = osp.join(work_dir, '20260101_000000')
    np.testing.assert_array_equal(read_scalars(run)['loss'].values, [2.0, 1.5, 1.2])
    file = osp.join(run, 'vis_data', 'scalars.json')
    np.testing.assert_array_equal(read_scalars(file)['coco/bbox_mAP'].iters, [4])


def test_iteration_steps_of_validation_are_kept(tmp_path):
    # log_metric_by_epoch=False: a validation record's step is the iteration it follows
    _write_run(tmp_path, 'run', [_train(1.0, 1, 10), _val(0.3, 12)])
    np.testing.assert_array_equal(read_scalars(str(tmp_path))['coco/bbox_mAP'].iters, [12])


def test_read_scalars_of_a_real_training_log(tmp_path):
    register_all_modules()
    # 6 samples in batches of 2: 3 iterations per epoch, each logged, validated every epoch
    Runner(**toy_runner_cfg(tmp_path, max_epochs=2, num_samples=6)).train()
    curves = read_scalars(str(tmp_path))
    np.testing.assert_array_equal(curves['loss'].iters, np.arange(1, 7))
    np.testing.assert_array_equal(curves['toy/mean'].iters, [3, 6])
    assert np.isfinite(curves['loss'].values).all() and 'lr' in curves


def test_bad_logs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such log file or directory: .*nowhere'):
        read_scalars(str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError, match='no .*scalars.json'):
        read_scalars(str(tmp_path))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"loss": 1.0, "iter": 1}\n{"loss": \n')
    with pytest.raises(ValueError, match='bad.json, line 2: not a JSON record'):
        read_scalars(str(bad))


def test_plot_overlays_runs(work_dir, tmp_path, capsys):
    tool = load_tool('analysis_tools/plot_logs.py')
    other = str(tmp_path / 'other')
    _write_run(other, 'run', [_train(3.0, 1, 4), _val(0.05, 1)])
    out = str(tmp_path / 'plots' / 'curves.png')
    tool.main([work_dir, other, '--keys', 'loss', 'coco/bbox_mAP', '--out', out,
               '--legend', 'long', 'short'])
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (2 * 300, 800)  # 8 x 3 inches per subplot at 100 dpi, stacked
    assert 'loss, coco/bbox_mAP of 2 run(s)' in capsys.readouterr().out

    runs = [('long', read_scalars(work_dir)), ('short', read_scalars(other))]
    fig = tool.plot_curves(runs, ['loss', 'coco/bbox_mAP'])
    mAP_axes = fig.axes[1]
    assert mAP_axes.get_ylabel() == 'coco/bbox_mAP'
    assert [line.get_label() for line in mAP_axes.lines] == ['long', 'short']
    np.testing.assert_array_equal(mAP_axes.lines[0].get_xdata(), [4, 8])
    np.testing.assert_array_equal(mAP_axes.lines[1].get_ydata(), [0.05])


def test_plot_refuses_unknown_keys_and_legends(work_dir, tmp_path):
    tool = load_tool('analysis_tools/plot_logs.py')
    with pytest.raises(KeyError, match="'loss_cls' is in none of the logs; logged keys: coco"):
        tool.main([work_dir, '--keys', 'loss_cls', '--out', str(tmp_path / 'x.png')])
    with pytest.raises(SystemExit):
        tool.main([work_dir, '--out', str(tmp_path / 'x.png'), '--legend', 'a', 'b'])
