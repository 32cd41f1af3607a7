"""COCO-format datasets checked before anyone trains on them.

``CheckedCocoDataset`` reads the annotation file like mmdet's ``CocoDataset`` but
- rejects, up front, what cannot be repaired, with an error naming the file and the record: JSON
  syntax errors (line and column), a missing ``images`` or ``categories`` list, records without
  their required fields, duplicate ids, annotations of images that are not in ``images``, classes
  of the metainfo that are not categories of the file (or name several), a training file without
  annotations and, for evaluation, image files that do not exist;
- repairs the rest while parsing, and logs once per reason how many annotations it repaired or
  dropped, with an example record: boxes partly outside the image are clipped to it; boxes with
  NaN or infinite coordinates, zero or negative sizes, wholly outside the image or narrower than
  a pixel inside it, and annotations of categories that are unknown or not among the classes
  are dropped. Images left without annotations are counted in the log too.
Classes map to categories by name: label ``i`` is the category named ``classes[i]``, whatever the
order of the file's categories (mmdet's ``CocoDataset`` labels them in the file's order instead).
See docs/data.md.
"""
import json
import logging
import math
from collections import Counter

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine import fileio
from mmengine.logging import print_log

from mmdeform.registry import DATASETS

# Fields every record needs; COCOeval also reads 'area' and 'iscrowd' of the annotations it
# evaluates.
REQUIRED_FIELDS = {
    'images': ('id', 'file_name', 'width', 'height'),
    'annotations': ('id', 'image_id', 'category_id', 'bbox'),
    'categories': ('id', 'name'),
}
EVALUATION_FIELDS = ('area', 'iscrowd')

# What happens to an annotation, as logged (and counted in ``annotation_repairs``).
CLIPPED = 'partly outside the image: clipped to it'
NON_FINITE = 'with a NaN or infinite box: dropped'
DEGENERATE = 'with zero or negative width/height: dropped'
OUTSIDE = 'wholly outside the image: dropped'
SUB_PIXEL = 'narrower or lower than 1 pixel inside the image: dropped'
UNKNOWN_CATEGORY = 'with a category_id that is not in "categories": dropped'
OTHER_CLASS = 'of a category that is not one of the classes: dropped'


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_id(value):
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _name(key, index, record):
    """How an error names a record: ``annotations[12] (id 345)``."""
    has_id = isinstance(record, dict) and 'id' in record
    return f'{key}[{index}]' + (f' (id {record["id"]!r})' if has_id else '')


def read_json(path, source):
    """The JSON in ``path``; a syntax error names ``source``, the line and the column."""
    with open(path, 'rb') as file:
        data = file.read()
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise ValueError(f'{source} is not valid JSON: {error.msg} at line {error.lineno}, '
                         f'column {error.colno}') from None
    except UnicodeDecodeError as error:
        raise ValueError(f'{source} is not JSON text: {error}') from None


def check_structure(dataset, source, evaluated=False):
    """Raises a ValueError naming ``source`` and the record where a COCO annotation file is not
    structured as one: what pycocotools and mmdet would otherwise index silently or fail on with
    a bare KeyError. ``evaluated``: the file's annotations feed COCOeval."""
    if not isinstance(dataset, dict):
        raise ValueError(f'{source}: a COCO annotation file holds a JSON object with "images", '
                         f'"annotations" and "categories", not a JSON {type(dataset).__name__}')
    for key in ('images', 'categories'):
        if key not in dataset:
            raise ValueError(f'{source} has no {key!r} list (keys found: {sorted(dataset)})')
    for key, fields in REQUIRED_FIELDS.items():
        if key == 'annotations' and evaluated:
            fields += EVALUATION_FIELDS
        _check_records(dataset.get(key, []), key, fields, source)
    _check_images(dataset['images'], source)
    _check_annotations(dataset.get('annotations', []), dataset['images'], source)


def _check_records(records, key, fields, source):
    """A list of objects with ``fields`` and unique ids."""
    if not isinstance(records, list):
        raise ValueError(f'{source}: {key!r} must be a list, got a {type(records).__name__}')
    seen = set()
    for index, record in enumerate(records):
        if not (isinstance(record, dict) and all(field in record for field in fields)):
            missing = [field for field in fields if not isinstance(record, dict)
                       or field not in record]
            raise ValueError(f'{source}: {_name(key, index, record)} has no {missing}: '
                             f'{str(record)[:200]}')
        if not _is_id(record['id']):
            raise ValueError(f'{source}: {_name(key, index, record)} has id {record["id"]!r}; '
                             f'ids must be integers (or strings)')
        if record['id'] in seen:
            raise ValueError(f'{source}: {_name(key, index, record)} repeats the id of an '
                             f'earlier record of {key!r}')
        seen.add(record['id'])


def _check_images(images, source):
    for index, image in enumerate(images):
        sizes = image['width'], image['height']
        if not all(_is_number(size) and size >= 1 for size in sizes):
            raise ValueError(f'{source}: {_name("images", index, image)} has width, height = '
                             f'{sizes}; both must be positive numbers')
        if not isinstance(image['file_name'], str) or not image['file_name']:
            raise ValueError(f'{source}: {_name("images", index, image)} has file_name '
                             f'{image["file_name"]!r}; it must be a non-empty string')


def _check_annotations(annotations, images, source):
    image_ids = {image['id'] for image in images}
    for index, ann in enumerate(annotations):
        bbox = ann['bbox']
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            raise ValueError(f'{source}: {_name("annotations", index, ann)} has bbox {bbox!r}; '
                             f'it must be 4 numbers [x, y, width, height]')
        if not (_is_id(ann['image_id']) and _is_id(ann['category_id'])):
            raise ValueError(f'{source}: {_name("annotations", index, ann)} has image_id '
                             f'{ann["image_id"]!r}, category_id {ann["category_id"]!r}; ids '
                             f'must be integers (or strings)')
        if ann['image_id'] not in image_ids:
            raise ValueError(f'{source}: {_name("annotations", index, ann)} refers to image id '
                             f'{ann["image_id"]!r}, which is not in "images"')


def repair_box(bbox, width, height):
    """A COCO ``[x, y, w, h]`` box clipped to the ``width`` x ``height`` image, and what was
    wrong with it (one of the reasons above, or None). The box is None where it is dropped."""
    if not all(math.isfinite(v) for v in bbox):
        return None, NON_FINITE
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return None, DEGENERATE
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + w, width), min(y + h, height)
    if right <= left or bottom <= top:
        return None, OUTSIDE
    if right - left < 1 or bottom - top < 1:  # mmdet drops these too (as annotation noise)
        return None, SUB_PIXEL
    if (left, top, right, bottom) == (x, y, x + w, y + h):
        return bbox, None
    return [left, top, right - left, bottom - top], CLIPPED


def category_ids(categories, classes, source):
    """The ids of the categories (a COCO file's ``categories`` records) named ``classes``, in the
    order of ``classes``: label ``i`` is the category named ``classes[i]``.

    pycocotools' ``getCatIds(catNms=classes)`` returns the ids in the file's order instead, so
    classes given in another order would name each label after another category.

    Raises:
        ValueError: naming ``source`` where a class is not the name of exactly one category.
    """
    ids_by_name = {}
    for category in categories:
        ids_by_name.setdefault(category['name'], []).append(category['id'])
    missing = [name for name in classes if name not in ids_by_name]
    if missing:
        names = list(ids_by_name)
        raise ValueError(
            f'{source}: {len(missing)} of the {len(classes)} classes of the dataset are not '
            f'category names in the file: {missing}. Its categories are {names} (in the '
            f'file\'s order); set metainfo=dict(classes=...) in the dataset config to (a subset '
            f'of) them. Classes map to categories by name, in any order: label i is the '
            f'category named classes[i].')
    repeated = {name: ids_by_name[name] for name in classes if len(ids_by_name[name]) > 1}
    if repeated:
        raise ValueError(f'{source}: several categories have the name of a class (name: ids): '
                         f'{repeated}; classes map to categories by name, so names must be unique')
    if len(set(classes)) < len(classes):
        raise ValueError(f'{source}: the classes {list(classes)} repeat a name')
    return [ids_by_name[name][0] for name in classes]


class CheckedCOCO(COCO):
    """mmdet's COCO api on a file whose syntax and structure are checked before indexing.

    Args:
        annotation_file (str): the (local) file to read.
        source (str): the name errors give the file. Defaults to ``annotation_file``.
        evaluated (bool): the annotations must have what COCOeval reads. Defaults to False.
    """

    def __init__(self, annotation_file, source=None, evaluated=False):
        super().__init__()  # an empty index
        source = source or annotation_file
        self.dataset = read_json(annotation_file, source)
        check_structure(self.dataset, source, evaluated)
        self.createIndex()
        # mmdet's snake-case aliases, which its __init__ bound to the empty index
        self.img_ann_map, self.cat_img_map = self.imgToAnns, self.catToImgs
        self.source = source

    def get_cat_ids(self, cat_names=(), sup_names=(), cat_ids=()):
        """With ``cat_names`` alone (as mmdet's ``CocoDataset`` and ``CocoMetric`` call it): the
        ids of the categories of these names, in the order of the names
        (:func:`category_ids`); otherwise pycocotools' filter."""
        if cat_names and not sup_names and not cat_ids:
            return category_ids(self.dataset['categories'], cat_names, self.source)
        return super().get_cat_ids(list(cat_names), list(sup_names), list(cat_ids))


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with the checks and repairs of this module's docstring.

    Same arguments as ``CocoDataset``. After loading, ``annotation_repairs`` counts the
    annotations repaired or dropped per reason.
    """

    def COCOAPI(self, local_path):  # noqa: N802  (CocoDataset reads the file with it)
        coco = CheckedCOCO(local_path, source=self.ann_file, evaluated=self.test_mode)
        self._check_has_annotations(coco)
        return coco

    def _check_has_annotations(self, coco):
        if not self.test_mode and not coco.dataset.get('annotations'):
            raise ValueError(f'{self.ann_file} has no annotations to train on')

    def load_data_list(self):
        self.annotation_repairs = Counter()
        self._repair_examples = {}
        data_list = super().load_data_list()
        self._log_repairs()
        self._log_images_without_annotations(data_list)
        if not self.test_mode and not any(info['instances'] for info in data_list):
            raise ValueError(f'{self.ann_file}: none of its annotations is usable for training '
                             f'(see the warnings above)')
        if self.test_mode:
            self._check_images_exist(data_list)
        return data_list

    def parse_data_info(self, raw_data_info):
        """mmdet's parsing, of the annotations that survive :meth:`repair_annotation`."""
        img_info = raw_data_info['raw_img_info']
        repaired = (self.repair_annotation(ann, img_info) for ann in raw_data_info['raw_ann_info'])
        usable = [ann for ann in repaired if ann is not None]
        return super().parse_data_info(dict(raw_data_info, raw_ann_info=usable))

    def repair_annotation(self, ann, img_info):
        """``ann`` with its box clipped to the image, or None where it is dropped; counts what
        it repairs or drops."""
        if ann.get('ignore', False):  # mmdet skips these; nothing to report
            return ann
        for reason, known in ((UNKNOWN_CATEGORY, self.coco.cats), (OTHER_CLASS, self.cat2label)):
            if ann['category_id'] not in known:
                self._count(reason, ann, img_info)
                return None
        bbox, problem = repair_box(ann['bbox'], img_info['width'], img_info['height'])
        if problem is not None:
            self._count(problem, ann, img_info)
        if bbox is None or (problem is None and ann.get('area', 0) > 0):
            return bbox and ann
        # mmdet's parser also drops annotations without a positive 'area' (a segmentation area,
        # optional for training): the box's area stands in for it.
        return dict(ann, bbox=bbox, area=bbox[2] * bbox[3])

    def _count(self, reason, ann, img_info):
        self.annotation_repairs[reason] += 1
        self._repair_examples.setdefault(
            reason, f'annotation id {ann["id"]!r} of image {img_info["file_name"]!r}'
            f' (bbox {ann["bbox"]})')

    def _log_repairs(self):
        for reason, count in self.annotation_repairs.items():
            print_log(f'{self.ann_file}: {count} annotation(s) {reason}, e.g. '
                      f'{self._repair_examples[reason]}', logger='current', level=logging.WARNING)
        if self.test_mode and self.annotation_repairs:
            print_log(f'{self.ann_file}: CocoMetric reads this file itself, where the annotations '
                      f'above are unchanged: it counts dropped boxes as objects to detect and '
                      f'clipped ones unclipped. Fix the file for an exact metric.',
                      logger='current', level=logging.WARNING)
        del self._repair_examples

    def _log_images_without_annotations(self, data_list):
        empty = [info['img_path'] for info in data_list if not info['instances']]
        if empty:
            print_log(f'{self.ann_file}: {len(empty)} of {len(data_list)} images have no usable '
                      f'annotation, e.g. {empty[0]} (training keeps them as background images '
                      f'unless filter_cfg sets filter_empty_gt=True)', logger='current')

    def _check_images_exist(self, data_list):
        # An evaluation over the readable images only would not be comparable with others, so
        # a missing image fails it, before any work is done.
        missing = [info['img_path'] for info in data_list
                   if not fileio.exists(info['img_path'], backend_args=self.backend_args)]
        if missing:
            raise FileNotFoundError(f'{self.ann_file}: {len(missing)} of its {len(data_list)} '
                                    f'images do not exist, e.g. {missing[:3]}')
