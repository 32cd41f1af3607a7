import copy
import itertools

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, set_random_seed
from torch.utils.data import DataLoader

from mmdeform.registry import HOOKS


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed training continue exactly as the uninterrupted one.

    mmengine's resume restores the weights, the optimizer, the parameter schedulers, the epoch and
    iteration and the message hub, but not:

    1. The train sampler's shuffling seed, drawn afresh by every run unless the config fixes
       ``randomness.seed`` (and always with ``diff_rank_seed=True``). It is saved in the
       checkpoint's meta as ``sampler_seed`` and given back to the sampler on resume (and
       ``IterBasedTrainLoop``'s iterator, which drew indices when it was built, is rebuilt).
    2. The random streams of the process (dropout; the data pipeline when ``num_workers=0``),
       which carry whatever set-up, validation and the interruption drew from them. Instead,
       each iteration starts from seeds derived from the run's seed, the process's rank and the
       iteration, so the draws depend on nothing else, and each process draws its own (the
       authors seed with seed + rank; one seed for all would give every GPU the same dropout
       masks and augmentations).
    3. The place in the epoch: ``EpochBasedTrainLoop`` restarts a partly trained epoch from its
       first batch. Resumed in the middle of an epoch (iteration checkpoints), the batches already
       trained are left out of that epoch: their indices are drawn, the data is not loaded.
       The loader of the rest of the epoch is built by ``Runner.build_dataloader`` from the
       config's ``train_dataloader`` (a runner built without one restarts the epoch, warning).

    Not restored: the random streams of dataloader worker processes, which mmengine seeds from
    the seed, the rank and the worker id when they start; a run whose augmentation draws happen
    in workers resumes with the exact data order but other augmentation draws.
    ``IterBasedTrainLoop`` replays (loads) the trained batches itself, which restores the order
    but makes the main process draw numbers for them.
    """

    # after DistSamplerSeedHook has set the sampler's epoch, before the checkpoint hook saves
    priority = 'LOW'

    def __init__(self) -> None:
        self._resumed_sampler_seed = None
        self._full_epoch_dataloader = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        sampler = _train_sampler(runner.train_dataloader)
        if hasattr(sampler, 'seed'):
            checkpoint['meta']['sampler_seed'] = int(sampler.seed)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._resumed_sampler_seed = checkpoint.get('meta', {}).get('sampler_seed')

    def before_train(self, runner) -> None:
        # a resumed run starts past iteration 0; a run initialized from `load_from` does not
        if runner.iter > 0 and self._resumed_sampler_seed is not None:
            _train_sampler(runner.train_dataloader).seed = self._resumed_sampler_seed
            loop = runner.train_loop
            if isinstance(loop, IterBasedTrainLoop):  # its iterator may have drawn indices
                loop.dataloader_iterator = type(loop.dataloader_iterator)(loop.dataloader)

    def before_train_epoch(self, runner) -> None:
        _seed_iteration(runner, runner.iter)
        trained = self._batches_trained_in_epoch(runner)
        if trained:
            rest_of_epoch = _without_first_batches(runner, trained)
            if rest_of_epoch is None:
                runner.logger.warning(
                    f'Epoch {runner.epoch + 1} starts from its first batch: the config has no '
                    'train_dataloader to rebuild the loader from, less the batches trained '
                    'before the interruption')
                return
            runner.logger.info(f'Resuming epoch {runner.epoch + 1} after its first {trained} '
                               'batches, which were trained before the interruption')
            self._full_epoch_dataloader = runner.train_loop.dataloader
            runner.train_loop.dataloader = rest_of_epoch

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        _seed_iteration(runner, runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if self._full_epoch_dataloader is not None:
            runner.train_loop.dataloader = self._full_epoch_dataloader
            self._full_epoch_dataloader = None

    @staticmethod
    def _batches_trained_in_epoch(runner) -> int:
        loop = runner.train_loop
        if not isinstance(loop, EpochBasedTrainLoop):
            return 0
        epoch_length = len(loop.dataloader)
        trained = runner.iter - runner.epoch * epoch_length
        if not 0 <= trained <= epoch_length:
            runner.logger.warning(
                f'Iteration {runner.iter} is not in epoch {runner.epoch + 1} of {epoch_length} '
                'batches (did the batch size or the number of processes change?): the epoch '
                'starts from its first batch')
            return 0
        return trained


def _train_sampler(dataloader: DataLoader):
    """The sampler that orders the training data: the batch sampler's when there is one."""
    return getattr(dataloader.batch_sampler, 'sampler', dataloader.sampler)


def _seed_iteration(runner, iteration: int) -> None:
    """Seed python's, numpy's and torch's generators from the run's seed, the rank of this
    process and ``iteration``."""
    entropy = np.random.SeedSequence([runner.seed, get_rank(), iteration]).generate_state(1)[0]
    set_random_seed(int(entropy))


class _FirstBatchesLeftOut:
    """A batch sampler's batches, less the first ``num_left_out``."""

    def __init__(self, batch_sampler, num_left_out: int) -> None:
        self.batch_sampler = batch_sampler
        self.num_left_out = num_left_out

    def __iter__(self):
        return itertools.islice(iter(self.batch_sampler), self.num_left_out, None)

    def __len__(self) -> int:
        return len(self.batch_sampler) - self.num_left_out

    @property
    def sampler(self):
        """The sampler of the batches, whose seed a checkpoint of the resumed epoch saves."""
        return self.batch_sampler.sampler


def _without_first_batches(runner, num_batches: int):
    """The training loader, rebuilt by ``runner.build_dataloader`` from the config's
    ``train_dataloader`` with the loader's dataset and batches less the first ``num_batches``;
    None where the config has no ``train_dataloader`` to rebuild it from."""
    loader_cfg = runner.cfg.get('train_dataloader')
    if not isinstance(loader_cfg, dict):
        return None
    dataloader = runner.train_loop.dataloader
    loader_cfg = copy.deepcopy(loader_cfg)
    # torch takes a batch sampler instead of these; the dataset is given built (and sliced)
    for key in ('batch_size', 'shuffle', 'drop_last', 'num_batch_per_epoch'):
        loader_cfg.pop(key, None)
    loader_cfg.update(
        dataset=dataloader.dataset,
        sampler=dataloader.sampler,
        batch_sampler=_FirstBatchesLeftOut(dataloader.batch_sampler, num_batches),
        # its own generator: the uninterrupted run draws no worker seed from the global one here
        generator=torch.Generator())
    return runner.build_dataloader(loader_cfg, seed=runner.seed)
