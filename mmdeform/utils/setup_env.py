"""Registration of mmdeform's modules and set-up of the run environment for the tools."""
import argparse
import datetime
import os
import os.path as osp
import warnings

import torch
import torch.distributed as torch_dist
from mmengine import DefaultScope
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log

from .checkpoint import allow_mmengine_checkpoint_globals, register_checkpoint_loader


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register the modules of mmdet and mmdeform into the registries.

    Also lets ``torch.load`` read mmengine's checkpoints under ``weights_only=True``
    (see :func:`allow_mmengine_checkpoint_globals`), and mmengine read local checkpoints with
    :func:`load_checkpoint_file`, whose errors name the file and what is wrong with it.

    Args:
        init_default_scope (bool): Whether to set the default scope to ``mmdeform``, so that all
            registries build modules from mmdeform's registry nodes (and, through their parents,
            mmdet's, mmcv's and mmengine's). Defaults to True.
    """
    from mmdet.utils import register_all_modules as register_mmdet_modules
    register_mmdet_modules(init_default_scope=False)
    import mmdeform.datasets  # noqa: F401
    import mmdeform.engine  # noqa: F401
    import mmdeform.evaluation  # noqa: F401
    import mmdeform.models  # noqa: F401
    allow_mmengine_checkpoint_globals()
    register_checkpoint_loader()

    if init_default_scope:
        never_created = DefaultScope.get_current_instance() is None \
            or not DefaultScope.check_instance_created('mmdeform')
        if never_created:
            DefaultScope.get_instance('mmdeform', scope_name='mmdeform')
            return
        current_scope = DefaultScope.get_current_instance()
        if current_scope.scope_name != 'mmdeform':
            warnings.warn(f'The current default scope "{current_scope.scope_name}" is not '
                          '"mmdeform", `register_all_modules` will force the current default '
                          'scope to be "mmdeform". If this is not expected, please set '
                          '`init_default_scope=False`.')
            # a new instance name: DefaultScope instances are looked up by name
            DefaultScope.get_instance(f'mmdeform-{datetime.datetime.now()}',
                                      scope_name='mmdeform')


def add_run_arguments(parser) -> None:
    """The options tools/train.py and tools/test.py share: --cfg-options, --launcher,
    --local_rank, --seed and --deterministic."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair in xxx=yyy format '
        'will be merged into config file. If the value to be overwritten is a list, it should '
        'be like key="[a,b]" or key=a,b It also allows nested list/tuple values, e.g. '
        'key="[(a,b),(c,d)]" Note that the quotation marks are necessary and that no white '
        'space is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch of PyTorch >= 2.0 passes `--local-rank`, older ones
    # `--local_rank`; torchrun passes neither but sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--seed', type=int, help='random seed (sets randomness.seed)')
    parser.add_argument(
        '--deterministic',
        action='store_true',
        help='use deterministic algorithms where torch has them (sets '
        'randomness.deterministic); with --seed, two CPU runs give bit-identical results')


def parse_run_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse a tools/train.py or tools/test.py command line (``parser`` has a ``config``
    argument and :func:`add_run_arguments`'s): a missing config file is a usage error, and
    ``--local_rank`` becomes LOCAL_RANK where the launcher did not set it (torchrun does)."""
    args = parser.parse_args()
    if not osp.isfile(args.config):
        parser.error(f'config file {args.config} does not exist')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_run_config(args) -> Config:
    """The config of a tools/train.py or tools/test.py run, with the command line applied.

    Registers the modules first: the config's default_scope picks the registries, and resuming
    or testing loads mmengine checkpoints under torch's weights_only=True.
    ``work_dir``: ``--work-dir``, else the config's, else ./work_dirs/CONFIG_NAME.
    ``--seed`` and ``--deterministic`` set ``randomness.seed`` and ``randomness.deterministic``.
    The runner is ``ShortConsoleRunner`` (a header on the console, the config in the log file)
    unless the config names one.
    """
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    _apply_randomness_arguments(cfg, args)
    cfg.setdefault('runner_type', 'mmdeform.ShortConsoleRunner')
    return cfg


# The config key that lists the keys the command line set (options, --seed, --amp, ...): a
# resumed run may leave these out, the saved config remembers them.
COMMAND_LINE_KEY = 'command_line_settings'
# Keys that belong to one launch of a tool, not to the training: never compared, and taken from
# the command line (train.py sets resume and load_from from --resume).
_LAUNCH_KEYS = ('launcher', 'work_dir', 'experiment_name', 'resume', 'load_from',
                COMMAND_LINE_KEY)


def record_command_line_settings(cfg: Config, config_path: str) -> None:
    """Write into ``cfg`` which of its keys differ from ``config_path``'s: the saved config of
    the run then tells them from later changes of the file (see :func:`config_to_resume`)."""
    cfg[COMMAND_LINE_KEY] = sorted(_differences(Config.fromfile(config_path), cfg))


def config_to_resume(cfg: Config, config_path: str) -> Config:
    """The config of a resumed run: the one the run saved in its work dir, where there is one,
    else ``cfg``.

    The saved config already has the settings of the first run's command line. ``cfg`` (the
    config file ``config_path`` with this command line applied) must agree with it, except
    where the first command line set what this one leaves out. The keys of this launch
    (``launcher``, ``work_dir``, ``experiment_name``...) come from ``cfg``.

    Raises:
        ValueError: naming each key where ``cfg`` differs, with both values and whether the
            command line or the config file gives it.
    """
    saved_path = osp.join(cfg.work_dir, osp.basename(config_path))
    if not osp.isfile(saved_path):
        print_log(f'No config saved in {cfg.work_dir}: resuming with {config_path} and the '
                  'command line', logger='current')
        return cfg
    saved = Config.fromfile(saved_path)
    set_before = set(saved.get(COMMAND_LINE_KEY, ()))
    set_now = set(_differences(Config.fromfile(config_path), cfg))
    refused = [
        f'  {key}: {saved_value!r} in the saved config, {value!r} '
        + ('on the command line' if key in set_now else f'in {config_path}')
        for key, (saved_value, value) in _differences(saved, cfg).items()
        if key in set_now or key not in set_before]
    if refused:
        raise ValueError(
            f'--resume: the run in {cfg.work_dir} was started with another config than the '
            f'one given, at:\n' + '\n'.join(refused) + '\nResume without these options and '
            f'with {config_path} as it was (its settings are in {saved_path}), or train in '
            'another work dir.')
    print_log(f'Resuming with the config saved in {saved_path}', logger='current')
    for key in _LAUNCH_KEYS:
        saved.pop(key, None)
        if key in cfg:
            saved[key] = cfg[key]
    return saved


def _differences(cfg: Config, other: Config) -> dict:
    """{dotted key: (value in ``cfg``, value in ``other``)} where they differ, to the leaves
    of nested dicts and lists; launch keys left out, a key set to None as good as unset."""
    flat, other_flat = _flat(cfg.to_dict()), _flat(other.to_dict())
    differences = {}
    for key in sorted(flat.keys() | other_flat.keys()):
        value, other_value = flat.get(key), other_flat.get(key)
        if value != other_value and key.split('.')[0] not in _LAUNCH_KEYS:
            differences[key] = value, other_value
    return differences


def _flat(value, key: str = '') -> dict:
    """{dotted key: leaf} of nested dicts and lists (a list item's key is its index)."""
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, (list, tuple)) else ()
    flat = {}
    for name, item in items:
        flat.update(_flat(item, f'{key}.{name}' if key else str(name)))
    return flat or {key: value}  # a leaf, or an empty dict or list


def _apply_randomness_arguments(cfg: Config, args) -> None:
    """--seed and --deterministic into mmengine's ``randomness`` (``Runner.set_randomness``)."""
    if args.seed is None and not args.deterministic:
        return
    randomness = cfg.setdefault('randomness', ConfigDict())
    randomness.setdefault('seed', None)  # a required argument of Runner.set_randomness
    if args.seed is not None:
        randomness.seed = args.seed
    if args.deterministic:
        randomness.deterministic = True
        # cuBLAS is deterministic only with a fixed workspace; read when CUDA starts, i.e. later.
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')


def setup_cpu_distributed(cfg: Config) -> None:
    """Let a distributed run (``cfg.launcher != 'none'``) work on a machine without CUDA.

    The configs ask for NCCL, which needs GPUs, and mmengine's ``init_dist`` calls
    ``torch.cuda.set_device``, which fails without CUDA. So without CUDA this initializes the gloo
    process group itself (the Runner then keeps it) and lets DDP wrap the CPU model, which takes
    no ``device_ids``. Nothing changes where CUDA is available.

    Args:
        cfg (Config): The run's config, modified in place.
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RuntimeError('CUDA is not available: a CPU-only distributed run needs '
                           f'--launcher pytorch (tools/dist_*.sh), not --launcher {cfg.launcher}')
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env_cfg.setdefault('dist_cfg', ConfigDict())
    print_log(f'CUDA is not available: using the gloo backend instead of '
              f'{dist_cfg.get("backend", "nccl")!r} for the distributed run', logger='current')
    dist_cfg.backend = 'gloo'
    kwargs = {key: value for key, value in dist_cfg.items() if key != 'backend'}
    if kwargs.get('timeout') is not None:  # seconds in the config, as for mmengine's init_dist
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    # RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from torchrun.
    torch_dist.init_process_group(backend='gloo', **kwargs)

    if cfg.get('model_wrapper_cfg') is None:
        # What the Runner builds by default, less the device_ids=[LOCAL_RANK] of a GPU.
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
