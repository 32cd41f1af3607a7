"""Converts a Hugging Face DeformableDetrForObjectDetection checkpoint folder to mmdeform.

The folder is what the hub holds (SenseTime/deformable-detr and its variants): config.json with
model.safetensors or pytorch_model.bin (read with torch's safe unpickler). The tool says which of
configs/deformable_detr_r50*.py and configs/demo/*.py builds the same model (or what differs),
and with --config refuses a config that differs. 91 category-id classes become our 80
(mmdeform/converters).

    python tools/model_converters/hf_to_mmdeform.py deformable-detr/ ours.pth
    python tools/test.py configs/deformable_detr_r50.py ours.pth
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='Hugging Face checkpoint folder (config.json and weights)')
    parser.add_argument('dst', help='where to write the mmdeform checkpoint')
    parser.add_argument('--config', help='refuse to convert unless this config of ours builds '
                        'the same model (default: tell which of ours does)')
    args = parser.parse_args(argv)
    from mmengine.config import Config

    from mmdeform.converters import (hf_class_names, hf_to_mmdeform, load_hf_folder,
                                     save_converted_checkpoint)
    from mmdeform.converters import hf_config as hf

    config, state_dict = load_hf_folder(args.src)
    architecture = hf.hf_architecture(config)
    if args.config:
        path, diffs = args.config, sorted(hf.differences(
            architecture, hf.config_architecture(Config.fromfile(args.config))))
        if diffs:
            sys.exit(f'{args.config} builds another model than {args.src}:\n'
                     + describe(diffs))
    else:
        path, diffs = hf.matching_config(architecture,
                                         hf.our_configs(ROOT) + hf.demo_configs(ROOT))

    state_dict = hf_to_mmdeform(state_dict, config)
    print(save_converted_checkpoint(state_dict, args.dst, args.src, hf_class_names(config)))
    shown = args.config or osp.relpath(path, ROOT)
    if diffs:
        print(f'None of our configs builds this model; the closest, {shown}, differs in:\n'
              + describe(diffs))
    else:
        print(f'It is {shown}:\n    python tools/test.py {shown} {args.dst}')


def describe(diffs):
    return '\n'.join(f'    {key}: Hugging Face {theirs!r}, ours {ours!r}'
                     for key, theirs, ours in diffs)


if __name__ == '__main__':
    sys.exit(main())
