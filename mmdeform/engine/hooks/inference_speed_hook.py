import time
from typing import Optional, Sequence

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook

from mmdeform.registry import HOOKS


@HOOKS.register_module()
class InferenceSpeedHook(Hook):
    """Measure the inference speed of the test loop.

    Each test iteration after ``num_warmup`` warm-up iterations is timed, CUDA synchronized, from
    before the model's ``test_step`` (pre-processing, forward, post-processing) to after the
    evaluator has collected its predictions; data loading is not timed. The images of the timed
    iterations are counted, so the batch size does not matter. At the end of the test the images
    per second and the mean latency per image (ms) are logged and added to the metrics as
    ``speed/images_per_s`` and ``speed/latency_ms``, which puts them next to the COCO metrics.

    In a distributed test the images and times of all processes are summed: the images per second
    are then those of all processes together, the latency is that of one process.

    Args:
        num_warmup (int): Untimed iterations at the start, which pay for memory allocation,
            kernel selection and caches. Defaults to 5.
    """

    # Run first: before RuntimeInfoHook and LoggerHook read the metrics at the end of the test.
    priority = 'HIGHEST'

    def __init__(self, num_warmup: int = 5) -> None:
        self.num_warmup = num_warmup

    def before_test_epoch(self, runner) -> None:
        self._num_images = 0
        self._elapsed = 0.0

    def before_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        if batch_idx >= self.num_warmup:
            self._synchronize()
            self._start = time.perf_counter()

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        if batch_idx >= self.num_warmup:
            self._synchronize()
            self._elapsed += time.perf_counter() - self._start
            # test_step returns one prediction per image
            self._num_images += len(outputs)

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        totals = torch.tensor([self._num_images, self._elapsed], dtype=torch.float64)
        all_reduce(totals)  # in place; a no-op outside a distributed run
        num_images, elapsed = totals.tolist()
        if num_images == 0 or elapsed == 0:
            runner.logger.warning(
                f'InferenceSpeedHook: no images timed; the test has at most num_warmup='
                f'{self.num_warmup} iterations')
            return
        world_size = runner.world_size
        images_per_s = num_images / (elapsed / world_size)
        latency_ms = elapsed / num_images * 1000
        runner.logger.info(
            f'Inference speed: {images_per_s:.2f} images/s, {latency_ms:.2f} ms/image '
            f'({int(num_images)} images after {self.num_warmup} warm-up iterations'
            f'{f" on each of {world_size} processes" if world_size > 1 else ""})')
        if metrics is not None:
            metrics['speed/images_per_s'] = images_per_s
            metrics['speed/latency_ms'] = latency_ms

    @staticmethod
    def _synchronize() -> None:
        # CUDA runs asynchronously; an uninitialized CUDA has run nothing to wait for.
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
