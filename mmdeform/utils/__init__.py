from .checkpoint import (allow_mmengine_checkpoint_globals, atomic_write, load_checkpoint_file,
                         register_checkpoint_loader, save_checkpoint_file)
from .logs import Curve, read_scalars
from .setup_env import (add_run_arguments, config_to_resume, load_run_config,
                        parse_run_arguments, record_command_line_settings, register_all_modules,
                        setup_cpu_distributed)

__all__ = [
    'allow_mmengine_checkpoint_globals', 'atomic_write', 'load_checkpoint_file',
    'register_checkpoint_loader', 'save_checkpoint_file', 'add_run_arguments',
    'config_to_resume', 'load_run_config', 'parse_run_arguments', 'record_command_line_settings',
    'register_all_modules', 'setup_cpu_distributed', 'Curve', 'read_scalars']
