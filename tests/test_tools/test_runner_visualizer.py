"""Each run of ShortConsoleRunner draws with a visualizer of its own: the config's fixed name
('visualizer') would give a second run in one process the first run's instance (and work dir),
while mmdet's hooks draw with the newest instance, perhaps another run's of another type."""
from mmdet.visualization import DetLocalVisualizer
from mmengine.config import Config
from mmengine.visualization import Visualizer

from mmdeform.engine.runner import ShortConsoleRunner
from mmdeform.utils import register_all_modules

from test_console import TOY_CONFIG


def runner(work_dir):
    cfg = Config.fromfile(TOY_CONFIG)
    cfg.work_dir = str(work_dir)
    return ShortConsoleRunner.from_cfg(cfg)


def test_each_run_draws_with_its_own_visualizer(tmp_path):
    register_all_modules()
    first = runner(tmp_path / 'first')
    Visualizer.get_instance('another run', save_dir=str(tmp_path / 'other'))
    second = runner(tmp_path / 'second')
    for run in (first, second):
        assert type(run.visualizer) is DetLocalVisualizer
        assert run.visualizer._vis_backends['LocalVisBackend']._save_dir.startswith(run.log_dir)
    assert second.visualizer is not first.visualizer
    assert Visualizer.get_current_instance() is second.visualizer
