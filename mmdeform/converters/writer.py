"""The writer of every converted checkpoint, and its metadata: ``meta.converted_from`` names the
source, ``meta.dataset_meta.classes`` the class names whenever they are known (the names that
tools/test.py, tools/image_demo.py and the inference API draw with)."""
from mmdeform.utils.checkpoint import save_checkpoint_file

CLASS_ROWS = 'bbox_head.cls_branches.0.bias'


def save_converted_checkpoint(state_dict, path, source, classes=None):
    """Writes one of our state dicts to ``path`` with the metadata above.

    Returns:
        str: a line saying what was written.

    Raises:
        ValueError: class names that are not one per class row of the state dict.
    """
    meta = dict(converted_from=str(source))
    if classes:
        rows = len(state_dict[CLASS_ROWS])
        if len(classes) != rows:
            raise ValueError(f'{len(classes)} class names for the {rows} classes of '
                             f'{source} ({CLASS_ROWS})')
        meta['dataset_meta'] = dict(classes=tuple(classes))
    save_checkpoint_file(dict(state_dict=state_dict, meta=meta), path)
    names = f' and the names of its {len(classes)} classes' if classes else ''
    return f'{len(state_dict)} tensors{names} written to {path}'
