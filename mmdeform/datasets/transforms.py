"""Data transforms of mmdeform (registered in mmdeform.registry.TRANSFORMS)."""
import logging

from mmcv import transforms as mmcv_transforms
from mmengine.logging import print_log

from mmdeform.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadImageFromFile(mmcv_transforms.LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments, defaults and exceptions) that names the file
    it cannot read, and can skip it.

    An unreadable file (missing, empty, not decodable) raises the exception mmcv's raises, with a
    note naming the file. With ``skip_unreadable=True`` the transform logs a warning naming it
    with the number of files skipped so far by this process, and returns None, so that mmengine's
    dataset draws another sample in training (up to its ``max_refetch``). (mmcv's
    ``ignore_empty`` skips silently.) mmdet's ``DetInferencer`` finds it by its name in a test
    pipeline.

    Args:
        skip_unreadable (bool): skip unreadable files instead of raising. Defaults to False.
        The others: mmcv's. Its default ``color_type='color'`` gives every image 3 channels
        (BGR): grayscale is replicated, alpha dropped.
    """

    def __init__(self, *args, skip_unreadable=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip_unreadable = skip_unreadable
        self.skipped = set()

    def transform(self, results):
        try:
            return super().transform(results)
        except Exception as error:  # whatever the backend raises for this one file
            if not self.skip_unreadable:
                add_note(error, f'cannot read image {results["img_path"]}')
                raise
            reason = str(error).strip() or type(error).__name__
        self.skipped.add(results['img_path'])
        print_log(f'skipped unreadable image {results["img_path"]} ({reason}); '
                  f'{len(self.skipped)} unreadable image(s) skipped so far by this process',
                  logger='current', level=logging.WARNING)
        return None

    def __repr__(self):
        # mmcv's, which it is unless skipping
        if not self.skip_unreadable:
            return super().__repr__()
        return f'{super().__repr__()[:-1]}, skip_unreadable=True)'


def add_note(error, note):
    """``error.add_note(note)`` (Python >= 3.11; pytest and tracebacks show it); on older Python
    the note goes to ``__notes__`` alone, which pytest reads too."""
    if hasattr(error, 'add_note'):
        error.add_note(note)
    else:
        error.__notes__ = [*getattr(error, '__notes__', []), note]
