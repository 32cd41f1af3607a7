"""Checks a FORCE_CUDA=1 build of mmdeform._C without a GPU: the library loads into the CUDA
build of torch, registers CUDA kernels for both ops, and holds device code for each requested
architecture.

    python tools/misc/check_cuda_build.py BUILD_LIB_DIR "8.0;9.0"
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys

import torch


def find_cuobjdump():
    """cuobjdump from PATH, the CUDA toolkit, or the copy that the CUDA build of torch brings
    with triton."""
    candidates = [shutil.which('cuobjdump'),
                  os.path.join(os.environ.get('CUDA_HOME', '/usr/local/cuda'), 'bin', 'cuobjdump')]
    try:
        import triton
        candidates.append(os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia',
                                       'bin', 'cuobjdump'))
    except ImportError:
        pass
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit('cuobjdump not found (looked in PATH, CUDA_HOME and triton)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('build_lib', help='the --build-lib folder of the CUDA build')
    parser.add_argument('archs', help='TORCH_CUDA_ARCH_LIST used for the build, e.g. "8.0;9.0"')
    args = parser.parse_args()

    libraries = glob.glob(os.path.join(args.build_lib, 'mmdeform', '_C*.so'))
    if len(libraries) != 1:
        sys.exit(f'expected one mmdeform/_C*.so under {args.build_lib}, found {libraries}')
    library = libraries[0]
    print(f'torch {torch.__version__} (CUDA {torch.version.cuda}); loading {library}')
    torch.ops.load_library(library)
    for op in ('ms_deform_attn_forward', 'ms_deform_attn_backward'):
        for key in ('CPU', 'CUDA'):
            if not torch._C._dispatch_has_kernel_for_dispatch_key(f'mmdeform::{op}', key):
                sys.exit(f'mmdeform::{op} has no {key} kernel in {library}')
    print('mmdeform::ms_deform_attn_forward/backward: CPU and CUDA kernels registered')

    cuobjdump = find_cuobjdump()
    listing = subprocess.run([cuobjdump, '--list-elf', library], check=True,
                             capture_output=True, text=True).stdout
    for arch in args.archs.replace(',', ';').split(';'):
        sm = 'sm_' + arch.replace('.', '').replace('+PTX', '')
        if f'.{sm}.' not in listing:
            sys.exit(f'no {sm} device code in {library}:\n{listing}')
        print(f'{sm}: device code present')


if __name__ == '__main__':
    main()
