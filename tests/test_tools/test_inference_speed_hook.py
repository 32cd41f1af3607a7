import glob
import os.path as osp

import pytest
from mmengine.runner import Runner
from tools_toy_modules import toy_runner_cfg

import mmdeform.engine  # noqa: F401  (registers InferenceSpeedHook)


def _test(tmp_path, **kwargs):
    runner = Runner(**toy_runner_cfg(tmp_path, **kwargs))
    metrics = runner.test()
    with open(glob.glob(osp.join(runner.log_dir, '*.log'))[0]) as f:
        return metrics, f.read()


@pytest.mark.parametrize('batch_size', [1, 3])
def test_speed_in_metrics_and_log(tmp_path, batch_size):
    # 7 samples: the last batch is smaller; the first of the iterations is warm-up.
    metrics, log = _test(
        tmp_path, num_samples=7, batch_size=batch_size,
        custom_hooks=[dict(type='InferenceSpeedHook', num_warmup=1)])
    timed_images = 7 - batch_size

    assert metrics['speed/images_per_s'] > 0 and metrics['speed/latency_ms'] > 0
    # one process: images/s and ms/image are reciprocal
    assert metrics['speed/images_per_s'] * metrics['speed/latency_ms'] == pytest.approx(1000)
    assert 'toy/mean' in metrics
    assert f'({timed_images} images after 1 warm-up iterations)' in log
    # LoggerHook prints the speed with the other metrics of the test
    metrics_line = next(line for line in log.splitlines() if 'toy/mean' in line)
    assert 'speed/images_per_s' in metrics_line and 'speed/latency_ms' in metrics_line


def test_nothing_timed_within_warmup(tmp_path):
    metrics, log = _test(tmp_path, num_samples=4, batch_size=2,
                         custom_hooks=[dict(type='InferenceSpeedHook', num_warmup=2)])
    assert 'no images timed' in log
    assert not any(key.startswith('speed/') for key in metrics)
