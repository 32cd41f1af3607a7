from .cpu_amp_optimizer_wrapper import CpuAmpOptimWrapper

__all__ = ['CpuAmpOptimWrapper']
