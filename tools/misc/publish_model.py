"""Makes a checkpoint fit to publish: weights and meta only, loadable by plain torch.

Keeps ``state_dict`` and ``meta`` (the class names in ``meta['dataset_meta']``, the config
text, ...) and drops the rest of a training checkpoint (optimizer, schedulers, mmengine's
message hub), so that ``torch.load(path, weights_only=True)`` reads it with no allow-list: the
kept values are tensors and Python's plain types (numpy scalars and arrays become Python numbers
and lists). The file is named after its content, ``NAME-<first 8 hex of its sha256>.pth``, as
mmdet's tools/model_converters/publish_model.py does (without the date), and written atomically.

    python tools/misc/publish_model.py work_dirs/demo/epoch_50.pth deformable_detr_shapes.pth
    # -> deformable_detr_shapes-1a2b3c4d.pth
"""
import argparse
import hashlib
import os
import sys

import numpy as np
import torch

PLAIN_TYPES = (str, int, float, bool, type(None))


def plain(value, name):
    """``value`` made of ``PLAIN_TYPES``, lists, tuples, dicts and tensors (what torch's
    ``weights_only`` unpickler reads without an allow-list); a clear error for anything else."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PLAIN_TYPES) or torch.is_tensor(value):
        return value
    if isinstance(value, (list, tuple)):
        items = (plain(item, f'{name}[{i}]') for i, item in enumerate(value))
        return list(items) if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {key: plain(item, f'{name}[{key!r}]') for key, item in value.items()}
    raise TypeError(f'{name} is a {type(value).__module__}.{type(value).__qualname__}, which '
                    'torch.load(weights_only=True) does not read without an allow-list: leave '
                    'its key out with --save-keys')


def publishable(checkpoint, save_keys, path):
    """The ``save_keys`` of ``checkpoint`` (read from ``path``) as plain values; the state dict
    as it is (its tensors and their order)."""
    missing = [key for key in save_keys if key not in checkpoint]
    if missing:
        raise KeyError(f'{path} has no {missing}; its keys are {sorted(checkpoint)}')
    published = {key: plain(checkpoint[key], key) for key in save_keys if key != 'state_dict'}
    if 'state_dict' in save_keys:
        state_dict = checkpoint['state_dict']
        not_tensors = [key for key, value in state_dict.items() if not torch.is_tensor(value)]
        if not_tensors:
            raise TypeError(f"{path}: state_dict entries {not_tensors} are not tensors")
        published['state_dict'] = state_dict
    return published


def hashed_name(path, digest):
    """``NAME.pth`` -> ``NAME-<digest[:8]>.pth``."""
    stem = path[:-len('.pth')] if path.endswith('.pth') else path
    return f'{stem}-{digest[:8]}.pth'


def sha256_of(path):
    sha = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            sha.update(block)
    return sha.hexdigest()


def publish(in_file, out_file, save_keys=('meta', 'state_dict')):
    """Writes the published checkpoint of ``in_file``; returns its path, ``out_file`` with the
    hash in the name."""
    from mmdeform.utils.checkpoint import load_checkpoint_file, save_checkpoint_file

    checkpoint = load_checkpoint_file(in_file)
    dropped = sorted(set(checkpoint) - set(save_keys))
    save_checkpoint_file(publishable(checkpoint, save_keys, in_file), out_file)
    final = hashed_name(out_file, sha256_of(out_file))
    os.replace(out_file, final)  # atomic: the file appears under its hashed name whole
    if dropped:
        print(f'left out: {", ".join(dropped)}')
    return final


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('in_file', help='checkpoint to publish (e.g. a tools/train.py one)')
    parser.add_argument('out_file', help="NAME.pth: the file written is NAME-<sha256[:8]>.pth")
    parser.add_argument('--save-keys', nargs='+', default=['meta', 'state_dict'],
                        help='keys of the checkpoint to keep (default: meta state_dict)')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.in_file):
        sys.exit(f'checkpoint not found: {args.in_file}')
    print(f'published {publish(args.in_file, args.out_file, args.save_keys)}')


if __name__ == '__main__':
    main()
