"""Export a detector to ONNX and check it with onnxruntime:
``python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --out model.onnx [--shape H W]
[--verify IMAGE] [--opset N]``.

The model takes one normalized (1, 3, H, W) image of the fixed size ``--shape`` and returns the
head's top-k ``boxes`` (x1, y1, x2, y2 in its pixels), ``scores`` and ``labels``
(see :mod:`mmdeform.deployment.onnx`).
"""
import argparse
import os.path as osp

import torch

from mmdeform.apis import init_detector
from mmdeform.deployment import (ExportableDetector, export_onnx, load_image,
                                 max_abs_differences, onnx_predict)
from mmdeform.deployment.onnx import MIN_OPSET


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a detector to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='the ONNX file to write')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'),
                        help='the fixed input size of the exported model (default 800 1333)')
    parser.add_argument('--verify', metavar='IMAGE',
                        help='run PyTorch and onnxruntime on this image (resized to --shape) '
                        'and print the largest absolute differences')
    parser.add_argument('--opset', type=int, default=17,
                        help=f'ONNX opset version, >= {MIN_OPSET} (default 17)')
    args = parser.parse_args(argv)
    for name in ('config', 'checkpoint', 'verify'):
        path = getattr(args, name)
        if path is not None and not osp.isfile(path):
            parser.error(f'{name} file {path} does not exist')
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        parser.error(f'the directory of --out, {out_dir}, does not exist')
    if min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    if args.opset < MIN_OPSET:
        parser.error(f'--opset must be >= {MIN_OPSET} (ONNX GridSample), got {args.opset}')
    return args


def main(argv=None):
    """Returns the differences of :func:`max_abs_differences` with ``--verify``, else None."""
    args = parse_args(argv)
    model = init_detector(args.config, args.checkpoint, device='cpu')
    export_onnx(model, args.shape, args.out, opset_version=args.opset)
    print(f'wrote {args.out}: input (1, 3, {args.shape[0]}, {args.shape[1]}), opset {args.opset}')
    if args.verify is None:
        return None
    inputs = load_image(args.verify, args.shape, model.data_preprocessor)
    with torch.no_grad():
        expected = ExportableDetector(model, args.shape)(inputs)
    differences = max_abs_differences(onnx_predict(args.out, inputs), expected)
    print('largest absolute difference, onnxruntime vs PyTorch on {}: boxes {boxes:.3g} px, '
          'scores {scores:.3g}; labels differing: {labels_differing}'.format(
              args.verify, **differences))
    return differences


if __name__ == '__main__':
    main()
