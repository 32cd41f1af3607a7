"""Data transforms of mmdeform (registered in mmdeform.registry.TRANSFORMS)."""
import logging

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from mmdeform.registry import TRANSFORMS


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` for files that may be missing, empty or not decodable.

    An unreadable file raises an ``OSError`` that names it and says why, or, with
    ``skip_unreadable=True``, is skipped: the transform logs a warning naming it with the number
    of files skipped so far by this process, and returns None, so that mmengine's dataset draws
    another sample in training (up to its ``max_refetch``). (mmcv's ``ignore_empty`` skips
    silently, and fails on a file that is there but does not decode.)

    Args:
        skip_unreadable (bool): skip unreadable files instead of raising. Defaults to False.
        The others: as ``LoadImageFromFile``. Its default ``color_type='color'`` gives every
        image 3 channels (BGR): grayscale is replicated, alpha dropped.
    """

    def __init__(self, *args, skip_unreadable=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip_unreadable = skip_unreadable
        self.skipped = set()

    def transform(self, results):
        try:
            return super().transform(results)
        except Exception as error:  # whatever the backend raises for this one file
            reason = str(error).strip() or type(error).__name__
            if not self.skip_unreadable:
                raise OSError(f'cannot read image {results["img_path"]}: {reason}') from error
        self.skipped.add(results['img_path'])
        print_log(f'skipped unreadable image {results["img_path"]} ({reason}); '
                  f'{len(self.skipped)} unreadable image(s) skipped so far by this process',
                  logger='current', level=logging.WARNING)
        return None

    def __repr__(self):
        return f'{super().__repr__()[:-1]}, skip_unreadable={self.skip_unreadable})'
