"""The head's number of classes must be the dataset's, checked before any epoch runs."""
from mmengine.hooks import Hook

from mmdeform.registry import HOOKS


@HOOKS.register_module()
class ClassNumberCheckHook(Hook):
    """Fails before training, validation or testing when a module's ``num_classes`` differs
    from the number of ``classes`` in the dataset's metainfo.

    Without it, a head with more classes than its dataset crashes CocoMetric only after a whole
    epoch (an IndexError in ``results2json``), and one with fewer trains on wrong labels. mmdet's
    NumClassCheckHook covers training and validation only, not ``tools/test.py``.
    """

    def before_train_epoch(self, runner) -> None:
        check_class_number(runner.model, runner.train_dataloader.dataset)

    def before_val_epoch(self, runner) -> None:
        check_class_number(runner.model, runner.val_dataloader.dataset)

    def before_test_epoch(self, runner) -> None:
        check_class_number(runner.model, runner.test_dataloader.dataset)


def check_class_number(model, dataset) -> None:
    classes = dataset.metainfo.get('classes')
    if classes is None:  # a dataset without class names: nothing to compare with
        return
    for name, module in model.named_modules():
        num_classes = getattr(module, 'num_classes', None)
        if isinstance(num_classes, int) and num_classes != len(classes):
            raise ValueError(
                f'{name or type(module).__name__}.num_classes is {num_classes}, but the '
                f'{type(dataset).__name__} has {len(classes)} classes ({", ".join(classes)}): '
                "set the head's num_classes in the model config to the dataset's number of "
                'classes, or the classes in the dataset metainfo')
