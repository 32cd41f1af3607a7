from .checkpoint import (allow_mmengine_checkpoint_globals, load_checkpoint_file,
                         save_checkpoint_file)
from .setup_env import (add_run_arguments, load_run_config, register_all_modules,
                        setup_cpu_distributed)

__all__ = [
    'allow_mmengine_checkpoint_globals', 'load_checkpoint_file', 'save_checkpoint_file',
    'add_run_arguments', 'load_run_config', 'register_all_modules', 'setup_cpu_distributed']
