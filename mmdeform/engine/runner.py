"""mmengine's Runner with a short console: a header instead of the long dumps."""
import logging
import os.path as osp
import uuid

from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, Runner

from mmdeform.registry import RUNNERS

# What mmengine's Runner logs at start, hundreds of lines: the environment, the config, the
# hooks per stage.
_LOG_FILE_ONLY = (f'\n{"-" * 60}\nSystem environment:', 'Config:\n',
                  'Hooks will be executed in the following order:')


class _LogFileOnly(logging.Filter):

    def filter(self, record):
        return not record.getMessage().startswith(_LOG_FILE_ONLY)


_LOG_FILE_ONLY_FILTER = _LogFileOnly()


@RUNNERS.register_module()
class ShortConsoleRunner(Runner):
    """mmengine's ``Runner`` whose console shows, instead of the environment, the config and
    the hooks, a header: config file, model type and number of parameters, number of images
    of each dataset of the run, work dir, where the full config is.

    The log file in the work dir keeps everything, and the config is dumped into the work dir
    as by ``Runner``. Same arguments as ``Runner``.
    """

    def build_visualizer(self, visualizer=None):
        # A config names its visualizer ('visualizer', as mmdet's do), and mmengine returns the
        # existing instance of that name: a second run in one process would write to the first
        # run's work dir, while mmdet's hooks draw with the newest instance, perhaps another
        # run's of another type. Each run builds its own.
        if isinstance(visualizer, dict):
            visualizer = dict(visualizer, name=f'{self.experiment_name}_{uuid.uuid4().hex[:8]}')
        return super().build_visualizer(visualizer)

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.addFilter(_LOG_FILE_ONLY_FILTER)
        return logger

    def call_hook(self, fn_name, **kwargs):
        # before_run: the loops of the run, and so their datasets, are built
        if fn_name == 'before_run':
            self.logger.info(self.header())
        super().call_hook(fn_name, **kwargs)

    def header(self) -> str:
        model = self.model.module if is_model_wrapper(self.model) else self.model
        num_params = sum(p.numel() for p in model.parameters())
        datasets = ', '.join(f'{split} {len(loop.dataloader.dataset)}' for split, loop in (
            ('train', self._train_loop), ('val', self._val_loop), ('test', self._test_loop))
            if isinstance(loop, BaseLoop))
        config_name = osp.basename(self.cfg.filename) if self.cfg.filename \
            else f'{self.timestamp}.py'  # as Runner.dump_config names it
        log_file = osp.join(self.log_dir, f'{self.timestamp}.log')
        return '\n'.join([
            '',
            f'config:      {self.cfg.filename}',
            f'model:       {type(model).__name__}, {num_params:,} parameters',
            f'images:      {datasets}',
            f'work dir:    {self.work_dir}',
            f'full config: {osp.join(self.work_dir, config_name)} (with the environment and '
            f'the hooks also in {log_file})'])
