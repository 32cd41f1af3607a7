import pytest
from tools_toy_modules import write_tiny_coco


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    """The 8-image COCO-format dataset of :func:`write_tiny_coco`, once per test module."""
    root = tmp_path_factory.mktemp('tiny_coco')
    write_tiny_coco(root)
    return root
