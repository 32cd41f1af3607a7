"""mmdet's ``CocoMetric`` with labels evaluated as the categories of the classes' names."""
from mmdet.evaluation import CocoMetric as MMDetCocoMetric

from mmdeform.datasets.checked_coco import category_ids
from mmdeform.registry import METRICS


@METRICS.register_module()
class CocoMetric(MMDetCocoMetric):
    """mmdet's ``CocoMetric`` (same arguments), where label ``i`` is evaluated as the category
    of the annotation file named ``classes[i]``, as ``CheckedCocoDataset`` labels it.

    mmdet's takes the ids of the categories named by the classes in the file's order, which
    gives each label another category's id when the classes are in another order.
    """

    def __init__(self, ann_file=None, *args, **kwargs):
        super().__init__(ann_file, *args, **kwargs)
        self.ann_file = ann_file

    def category_ids(self):
        """The category id of each label (``cat_ids``), found by name in the annotation file;
        None while the ground truth is converted from the dataset (``ann_file`` None), where
        mmdet writes the categories in the order of the classes."""
        if self.cat_ids is None and self._coco_api is not None:
            self.cat_ids = category_ids(self._coco_api.dataset['categories'],
                                        self.dataset_meta['classes'],
                                        self.ann_file)
        return self.cat_ids

    def compute_metrics(self, results):
        self.category_ids()
        return super().compute_metrics(results)
