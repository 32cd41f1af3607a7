"""Builds mmdeform and its native op (mmdeform._C): always the CPU kernel, the CUDA kernel too
when CUDA is available or FORCE_CUDA=1 (pick architectures with TORCH_CUDA_ARCH_LIST)."""
import os
from glob import glob

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def version():
    scope = {}
    with open(os.path.join('mmdeform', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def torch_requirement():
    """requirements.txt's torch line: the torch releases mmdeform supports, stated once."""
    with open('requirements.txt') as f:
        return next(line.strip() for line in f if line.startswith('torch'))


def with_cuda():
    import torch
    if os.getenv('FORCE_CUDA', '0') == '1':
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def cuda_wheel_include_dirs():
    """Headers of the CUDA libraries that pip installed with torch (cuBLAS, cuSPARSE, ...),
    which ATen's CUDA headers include and a bare CUDA toolkit may lack."""
    try:
        import nvidia
    except ImportError:
        return []
    return sorted(d for root in nvidia.__path__ for d in glob(os.path.join(root, '*', 'include')))


def native_extension():
    sources = glob('ops/csrc/*.cpp') + glob('ops/csrc/cpu/*.cpp')
    # No unroll-and-jam: it fuses the corner loop into the channel loop and blocks vectorization.
    cxx = ['-O3', '-fopenmp', '-fno-loop-unroll-and-jam']
    kwargs = dict(extra_link_args=['-fopenmp'], include_dirs=[os.path.abspath('ops/csrc')])
    if with_cuda():
        return CUDAExtension(
            'mmdeform._C',
            sources + glob('ops/csrc/cuda/*.cu'),
            define_macros=[('WITH_CUDA', None)],
            include_dirs=kwargs.pop('include_dirs') + cuda_wheel_include_dirs(),
            extra_compile_args={'cxx': cxx, 'nvcc': ['-O3']},
            **kwargs)
    return CppExtension('mmdeform._C', sources, extra_compile_args={'cxx': cxx}, **kwargs)


setup(
    name='mmdeform',
    version=version(),
    description='Deformable DETR for the OpenMMLab ecosystem',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.9',
    install_requires=[torch_requirement()],
    ext_modules=[native_extension()],
    cmdclass={'build_ext': BuildExtension},
    zip_safe=False,
)
