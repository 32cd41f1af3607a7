import copy
import functools
import itertools
import random
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, set_random_seed
from torch.utils.data import DataLoader

from mmdeform.registry import HOOKS

# The random streams seeded from the run's seed, the rank and the iteration.
_MODEL_STREAM, _DATA_STREAM = 0, 1


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed training continue exactly as the uninterrupted one.

    mmengine's resume restores the weights, the optimizer, the parameter schedulers, the epoch and
    iteration and the message hub, but not:

    1. The train sampler's shuffling seed, drawn afresh by every run unless the config fixes
       ``randomness.seed`` (and always with ``diff_rank_seed=True``). It is saved in the
       checkpoint's meta as ``sampler_seed`` and given back to the sampler on resume (and
       ``IterBasedTrainLoop``'s iterator, which drew indices when it was built, is rebuilt).
    2. The random streams (dropout; the data pipeline, in the main process or in dataloader
       workers), which carry whatever set-up, validation, earlier batches of a worker and the
       interruption drew from them. Instead, each iteration starts from seeds derived from the
       run's seed, the process's rank and the iteration, so the draws depend on nothing else,
       and each process draws its own (the authors seed with seed + rank; one seed for all would
       give every GPU the same dropout masks and augmentations). Each batch is loaded with
       python's, numpy's and torch's generators seeded for it, wherever it is loaded, and leaves
       the streams of the process that loads it as they were: the draws do not depend on
       ``num_workers`` either.
    3. The place in the epoch: ``EpochBasedTrainLoop`` restarts a partly trained epoch from its
       first batch. Resumed in the middle of an epoch (iteration or timed checkpoints), the
       batches already trained are left out of that epoch: their indices are drawn, the data is
       not loaded.

    For 2 and 3, the training loader of an ``EpochBasedTrainLoop`` is rebuilt by
    ``Runner.build_dataloader`` from the config's ``train_dataloader``, with the loader's dataset
    and a batch sampler that does both; a runner built without that config keeps its loader,
    with a warning: a partly trained epoch then starts from its first batch, and the data is
    loaded with the streams as they are. ``IterBasedTrainLoop`` replays (loads) the trained
    batches itself, which restores the order but makes the main process draw numbers for them.
    """

    # after DistSamplerSeedHook has set the sampler's epoch, before the checkpoint hook saves
    priority = 'LOW'

    def __init__(self) -> None:
        self._resumed_sampler_seed = None
        self._batches = None

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
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            dataloader = _rebuilt_with(
                runner, _SeededBatches(runner.train_dataloader.batch_sampler, runner.seed))
            if dataloader is None:
                runner.logger.warning(
                    'The config has no train_dataloader to rebuild the training loader from: '
                    'a partly trained epoch starts from its first batch, and the data is loaded '
                    'with the random streams as they are')
                return
            runner.train_loop.dataloader = dataloader
            self._batches = dataloader.batch_sampler  # build_dataloader copied the config

    def before_train_epoch(self, runner) -> None:
        _seed_iteration(runner, runner.iter)
        if self._batches is None:
            return
        trained = self._batches_trained_in_epoch(runner)
        if trained:
            runner.logger.info(f'Resuming epoch {runner.epoch + 1} after its first {trained} '
                               'batches, which were trained before the interruption')
        self._batches.start_epoch(first_iteration=runner.iter - trained, num_left_out=trained)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        _seed_iteration(runner, runner.iter + 1)

    def _batches_trained_in_epoch(self, runner) -> int:
        epoch_length = len(self._batches.batch_sampler)
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


def _stream_seed(seed: int, rank: int, iteration: int, stream: int) -> int:
    """The seed of a random stream of an iteration in the process of ``rank``."""
    return int(np.random.SeedSequence([seed, rank, iteration, stream]).generate_state(1)[0])


def _seed_iteration(runner, iteration: int) -> None:
    """Seed python's, numpy's and torch's generators for the model's draws in ``iteration``."""
    set_random_seed(_stream_seed(runner.seed, get_rank(), iteration, _MODEL_STREAM))


class _SeededBatch(list):
    """A batch's dataset indices and the seed to load them with (sent to a loader worker)."""

    def __init__(self, indices, seed: int) -> None:
        super().__init__(indices)
        self.seed = seed


class _SeededBatches:
    """A batch sampler's batches as :class:`_SeededBatch` es, each seeded for its iteration,
    less the first ``num_left_out`` of the epoch (set by :meth:`start_epoch`)."""

    def __init__(self, batch_sampler, seed: int) -> None:
        self.batch_sampler = batch_sampler
        self.seed = seed
        self.rank = get_rank()
        self.first_iteration = 0
        self.num_left_out = 0

    def start_epoch(self, first_iteration: int, num_left_out: int) -> None:
        """The epoch's first batch is that of ``first_iteration``; leave out ``num_left_out``."""
        self.first_iteration = first_iteration
        self.num_left_out = num_left_out

    @property
    def sampler(self):
        """The sampler of the batches, whose epoch and seed the hooks set and save."""
        return self.batch_sampler.sampler

    def __iter__(self):
        batches = itertools.islice(enumerate(self.batch_sampler, self.first_iteration),
                                   self.num_left_out, None)
        for iteration, indices in batches:
            yield _SeededBatch(indices,
                               _stream_seed(self.seed, self.rank, iteration, _DATA_STREAM))

    def __len__(self) -> int:
        return len(self.batch_sampler) - self.num_left_out


@contextmanager
def _random_streams_seeded(seed: int):
    """Seed python's, numpy's and torch's CPU generators for the block (the data pipeline's),
    and restore their states after it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would seed CUDA too
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _load_seeded(dataset, batch: _SeededBatch) -> list:
    """The samples of ``batch``, loaded with the random streams seeded by its seed."""
    with _random_streams_seeded(batch.seed):
        return [dataset[index] for index in batch]


def _rebuilt_with(runner, batches: _SeededBatches):
    """The training loader, rebuilt by ``runner.build_dataloader`` from the config's
    ``train_dataloader`` with (copies of) the loader's dataset and ``batches``, each batch
    loaded with its seed; None where the config has no ``train_dataloader``."""
    loader_cfg = runner.cfg.get('train_dataloader')
    if not isinstance(loader_cfg, dict):
        return None
    loader_cfg = copy.copy(loader_cfg)
    # torch takes a batch sampler instead of these; the dataset is given built (and sliced)
    for key in ('batch_size', 'shuffle', 'drop_last', 'num_batch_per_epoch'):
        loader_cfg.pop(key, None)
    loader_cfg.update(
        dataset=runner.train_dataloader.dataset, sampler=None, batch_sampler=batches,
        # its own generator: no worker seed drawn from the global one when an epoch starts,
        # where a resumed run starts in the middle of an epoch
        generator=torch.Generator())
    dataloader = runner.build_dataloader(loader_cfg, seed=runner.seed)
    dataset = dataloader.dataset
    # torch's loader loads a batch by `dataset.__getitems__(batch)`, where there is one
    dataset.__getitems__ = functools.partial(_load_seeded, dataset)
    return dataloader
