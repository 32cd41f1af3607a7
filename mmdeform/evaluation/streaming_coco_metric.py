"""mmdet's COCO box metric in flat memory: detections are matched as the images arrive.

``CocoMetric`` keeps every image's detections until the end, then pycocotools' ``COCOeval``
keeps ~80 kB per image until it accumulates: evaluation memory grows with the number of images.
``StreamingCocoMetric`` matches each chunk of images with ``COCOeval.evaluate()`` as soon as it
is complete and keeps only the compact records of ``coco_matches`` (~1-3 kB per image), from
which it computes the same numbers, to the bit (tests/test_evaluation).
"""
from typing import Dict

import numpy as np
from mmengine.logging import MMLogger
from terminaltables import AsciiTable

from mmdeform.registry import METRICS

from .coco_matches import accumulate, box_evaluator, coco_detections, match_images
from .coco_metric import CocoMetric

# COCOeval.stats, as CocoMetric names them
STATS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


@METRICS.register_module()
class StreamingCocoMetric(CocoMetric):
    """COCO box AP like our ``CocoMetric(metric='bbox')``, in a tenth of its memory: it keeps per
    image only what COCO's accumulation needs (26 bytes per detection).

    Args:
        chunk_size (int): images whose detections are held before they are matched.
        Other arguments as ``CocoMetric``; ``ann_file`` is required, and only the ``bbox``
        metric is computed, without writing result files (``CocoMetric`` does the others).
    """

    def __init__(self, ann_file=None, metric='bbox', chunk_size=200, **kwargs):
        if ann_file is None:
            raise ValueError('StreamingCocoMetric needs ann_file: it matches detections to the '
                             'ground truth while the images arrive')
        if metric not in ('bbox', ['bbox']):
            raise ValueError(f'StreamingCocoMetric computes metric="bbox" only, got {metric!r}; '
                             'use CocoMetric for segm and proposal metrics')
        if kwargs.get('format_only') or kwargs.get('outfile_prefix') is not None:
            raise ValueError('StreamingCocoMetric writes no result files (format_only, '
                             'outfile_prefix); use CocoMetric to write them')
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f'chunk_size must be a positive integer, got {chunk_size!r}')
        super().__init__(ann_file=ann_file, metric='bbox', **kwargs)
        unknown = set(self.metric_items or ()) - set(STATS)
        if unknown:  # checked now, not after a whole evaluation
            raise ValueError(f'metric_items {sorted(unknown)}: StreamingCocoMetric has {STATS}')
        self.chunk_size = chunk_size
        self._pending = []  # (img_id, bboxes, scores, labels) of images not matched yet

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            if sample['img_id'] not in self._coco_api.imgs:
                raise ValueError(f"image id {sample['img_id']} of a prediction is not an image "
                                 f'of the annotation file {self.ann_file}')
            pred = sample['pred_instances']
            self._pending.append((sample['img_id'], pred['bboxes'].cpu().numpy(),
                                  pred['scores'].cpu().numpy(), pred['labels'].cpu().numpy()))
        if len(self._pending) >= self.chunk_size:
            self._match_pending()

    def evaluate(self, size):
        self._match_pending()
        return super().evaluate(size)

    def _match_pending(self):
        """Replaces the held detections by their matches (one result per image)."""
        if not self._pending:
            return
        detections = [detection for img_id, bboxes, scores, labels in self._pending
                      for detection in coco_detections(img_id, bboxes, scores, labels,
                                                       self.category_ids())]
        img_ids = [img_id for img_id, *_ in self._pending]
        self.results.extend(self._match(detections, img_ids))
        self._pending = []

    def _match(self, detections, img_ids):
        return match_images(self._coco_api, detections, img_ids, self.category_ids(), self.iou_thrs,
                            self.proposal_nums)

    def compute_metrics(self, results) -> Dict[str, float]:
        # Like CocoMetric, evaluate every image of the annotation file: the images no result
        # came for have their ground truth missed.
        seen = {record.img_id for record in results}
        unseen = [img_id for img_id in self._coco_api.get_img_ids() if img_id not in seen]
        results = list(results) + (self._match([], unseen) if unseen else [])
        coco_eval = box_evaluator(self._coco_api, self.category_ids(), self.iou_thrs,
                                  self.proposal_nums)
        coco_eval.eval = accumulate(results, coco_eval.params)
        coco_eval.summarize()
        metric_items = self.metric_items or STATS
        eval_results = self._classwise(coco_eval.eval['precision']) if self.classwise else {}
        eval_results.update({
            f'bbox_{item}': float(f'{round(coco_eval.stats[STATS.index(item)], 3)}')
            for item in metric_items
        })
        MMLogger.get_current_instance().info(
            'bbox_mAP_copypaste: ' + ' '.join(f'{ap:.3f}' for ap in coco_eval.stats[:6]))
        return eval_results

    def _classwise(self, precision):
        """Logs AP, AP50, AP75, APs/m/l per category and returns the APs as CocoMetric does
        (precision: iou, recall, category, area range, max dets; -1 where a category has no
        ground truth)."""
        rows, results = [('category', ) + STATS], {}
        for k, cat_id in enumerate(self.cat_ids):
            of_k = precision[:, :, k, :, -1]
            selections = (of_k[:, :, 0], of_k[0, :, 0], of_k[5, :, 0], of_k[:, :, 1],
                          of_k[:, :, 2], of_k[:, :, 3])
            name = self._coco_api.loadCats(cat_id)[0]['name']
            aps = [_mean_precision(p) for p in selections]
            rows.append((name, ) + tuple(f'{round(ap, 3)}' for ap in aps))
            results[f'{name}_precision'] = round(aps[0], 3)
        MMLogger.get_current_instance().info('\n' + AsciiTable(rows).table)
        return results


def _mean_precision(precision):
    counted = precision[precision > -1]
    return float(np.mean(counted)) if counted.size else float('nan')

