"""Converts an mmdeform checkpoint to a Hugging Face DeformableDetrForObjectDetection folder.

The folder (config.json, model.safetensors, preprocessor_config.json) loads with
``DeformableDetrForObjectDetection.from_pretrained(OUT)`` under transformers 4.x and 5.x, and
``pipeline('object-detection', model=OUT)`` processes images as the config's test pipeline does
(mmdeform/converters/hf_processor.py). The backbone is transformers' own ResNet, or timm's with
--timm-backbone (as on the hub; DC5 always, transformers' ResNet has no dilation). Class names
(id2label) come from the checkpoint's dataset_meta, else from the config's dataset.

    python tools/model_converters/mmdeform_to_hf.py ours.pth hf/ configs/deformable_detr_r50.py
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='mmdeform checkpoint')
    parser.add_argument('dst', help='folder to write the Hugging Face files to')
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('--timm-backbone', action='store_true',
                        help="name the backbone timm's resnetXX, as the hub's checkpoints do")
    args = parser.parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmdeform.converters import (hf_config_json, hf_preprocessor_config, mmdeform_to_hf,
                                     save_hf_folder)
    from mmdeform.converters.hf_config import config_architecture, hf_dropouts
    from mmdeform.registry import DATASETS, MODELS
    from mmdeform.utils import register_all_modules
    from mmdeform.utils.checkpoint import load_checkpoint_file

    cfg = Config.fromfile(args.config)
    architecture = config_architecture(cfg)
    checkpoint = load_checkpoint_file(args.src)
    state_dict = checkpoint.get('state_dict', checkpoint)
    register_all_modules()
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdeform'):
        # refuses, naming the keys, a checkpoint of another model than the config's
        MODELS.build(cfg.model).load_state_dict(state_dict, strict=True)
        classes = class_names(checkpoint, cfg, DATASETS, architecture['num_classes'])
    config = hf_config_json(architecture, classes, args.timm_backbone, hf_dropouts(cfg))
    preprocessor_config = hf_preprocessor_config(cfg)
    save_hf_folder(args.dst, config, mmdeform_to_hf(state_dict, architecture, args.timm_backbone),
                   preprocessor_config)
    print(f'{args.dst}: config.json, model.safetensors ({len(state_dict)} tensors of ours) and '
          'preprocessor_config.json')


def class_names(checkpoint, cfg, datasets, num_classes):
    """The checkpoint's dataset_meta classes, else the config's test dataset's, else
    LABEL_0, LABEL_1, ... (Hugging Face's default names)."""
    names = ((checkpoint.get('meta') or {}).get('dataset_meta') or {}).get('classes')
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    if not names and dataset:
        names = (dataset.get('metainfo') or {}).get('classes') or \
            getattr(datasets.get(dataset.type), 'METAINFO', {}).get('classes')
    if not names or len(names) != num_classes:
        print(f'no names for the {num_classes} classes: writing LABEL_0 .. '
              f'LABEL_{num_classes - 1}')
        names = [f'LABEL_{i}' for i in range(num_classes)]
    return list(names)


if __name__ == '__main__':
    sys.exit(main())
