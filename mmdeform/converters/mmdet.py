"""mmdet 3.x Deformable DETR checkpoints (any variant) -> ours.

mmdeform keeps mmdet's module names, so the weights carry over as they are, with one exception:
like the authors', our input projections have a conv bias before GroupNorm, which mmdet drops;
it is added as zeros (the same function).
"""
# Every Deformable DETR state dict has these; other detectors lack some of them.
REQUIRED_PREFIXES = ('backbone.', 'neck.', 'encoder.layers.', 'decoder.layers.',
                     'bbox_head.cls_branches.', 'bbox_head.reg_branches.', 'level_embed')


def mmdet_to_mmdeform(state_dict):
    """mmdet 3.x Deformable DETR state dict -> ours (a new dict).

    Raises:
        ValueError: a state dict of another detector, naming the prefixes it lacks.
    """
    missing = [p for p in REQUIRED_PREFIXES if not any(k.startswith(p) for k in state_dict)]
    if missing:
        raise ValueError('not an mmdet 3.x Deformable DETR checkpoint: no keys start with '
                         + ', '.join(missing))
    converted = dict(state_dict)
    for key, weight in state_dict.items():
        if key.startswith('neck.') and key.endswith('.conv.weight'):
            converted.setdefault(key[:-len('weight')] + 'bias', weight.new_zeros(weight.shape[0]))
    return converted
