"""The TensorBoard line commented in configs/_base_/default_runtime.py, put in a config, gives
the visualizer mmengine's TensorboardVisBackend next to the LocalVisBackend (whose scalars.json
tools/analysis_tools/plot_logs.py reads)."""
import os.path as osp
import uuid

from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdeform.registry import VISUALIZERS
from mmdeform.utils import register_all_modules

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RUNTIME = osp.join(ROOT, 'configs', '_base_', 'default_runtime.py')
TOY_CONFIG = osp.join(ROOT, 'tests', 'test_tools', 'toy_config.py')


def test_the_commented_line_adds_tensorboard(tmp_path):
    with open(RUNTIME) as f:
        lines = [line[len('# '):] for line in f if line.startswith('# visualizer = ')]
    assert len(lines) == 1
    config = tmp_path / 'tensorboard.py'
    config.write_text(f'_base_ = {TOY_CONFIG!r}\n{lines[0]}')
    cfg = Config.fromfile(str(config))
    assert cfg.visualizer.type == 'DetLocalVisualizer'

    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdeform'):
        visualizer = VISUALIZERS.build(dict(cfg.visualizer, name=uuid.uuid4().hex,
                                            save_dir=str(tmp_path)))
    assert [type(backend).__name__ for backend in visualizer._vis_backends.values()] == \
        ['LocalVisBackend', 'TensorboardVisBackend']
