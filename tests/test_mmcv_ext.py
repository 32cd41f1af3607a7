"""mmdeform.mmcv_ext: placeholders for mmcv-lite's missing compiled ops, installed by
``import mmdeform`` before mmdet imports mmcv.ops, and only where full mmcv is absent."""
import ast
import os.path as osp
import subprocess
import sys
import sysconfig
from glob import glob

import pytest
import torch
from detector_checks import build_detector, fake_batch
from mmdet.models.backbones import ResNet
from mmengine.config import Config
from mmengine.utils.dl_utils import mmcv_full_available

from mmdeform import mmcv_ext

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

needs_placeholders = pytest.mark.skipif(
    not mmcv_ext.placeholders_in_use(), reason='full mmcv is installed: its ops are real')


def run_python(code):
    """``code`` in a fresh interpreter, from the repository root (its mmdeform)."""
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.calls_mmcv_placeholders
@needs_placeholders
def test_placeholder_names_the_op_says_how_to_get_it_and_is_recorded():
    from mmcv.ops import nms
    start = len(mmcv_ext.called_ops)
    with pytest.raises(mmcv_ext.MissingMmcvOpError) as error:
        nms(torch.rand(3, 4), torch.rand(3), iou_threshold=0.5)
    message = str(error.value)
    assert "'nms'" in message and 'mmcv-lite' in message
    assert 'install full mmcv' in message and 'docs/install.md' in message
    try:  # a caller that swallows the error does not hide the call
        nms(torch.rand(3, 4), torch.rand(3), iou_threshold=0.5)
    except Exception:
        pass
    assert mmcv_ext.called_ops[start:] == ['nms', 'nms']


@needs_placeholders
def test_mmengine_sees_no_full_mmcv():
    # It would otherwise import mmcv ops for SyncBN and DCN learning rates.
    assert not mmcv_full_available()


def test_real_library_is_kept(tmp_path):
    """Full mmcv: an ``mmcv/_ext`` next to mmcv's modules is used, not replaced."""
    (tmp_path / '_ext.py').write_text('def nms(*args):\n    return "real nms"\n')
    result = run_python(
        'import mmcv; mmcv.__path__.append(%r)\n'
        'import mmdeform\n'
        'from mmdeform import mmcv_ext\n'
        'from mmengine.utils.dl_utils import mmcv_full_available\n'
        'import mmcv._ext\n'
        'assert not mmcv_ext.placeholders_in_use() and not mmcv_ext.install()\n'
        'assert mmcv._ext.nms() == "real nms" and mmcv_full_available()\n' % str(tmp_path))
    assert result.returncode == 0, result.stderr


MMDET_FIRST = ('from mmdet.apis import DetInferencer\n'
               'import mmcv._ext\n'
               'from mmengine.utils.dl_utils import mmcv_full_available\n'
               'from mmdeform import mmcv_ext\n'
               'assert mmcv_ext.placeholders_in_use() and not mmcv_full_available()\n')


@needs_placeholders
def test_mmdet_imported_before_mmdeform_finds_the_placeholders():
    """The venv's start-up file (``make install``) puts the placeholders' finder in place."""
    startup_file = osp.join(sysconfig.get_paths()['purelib'], 'mmdeform_mmcv_ext.pth')
    assert osp.isfile(startup_file), f'{startup_file} is missing: run make install'
    result = run_python(MMDET_FIRST)
    assert result.returncode == 0, result.stderr


@needs_placeholders
def test_startup_file_alone_lets_mmdet_import_first(tmp_path):
    """Only the start-up file written here is processed (-S: no site-packages' .pth files)."""
    mmcv_ext.write_startup_file(str(tmp_path))
    result = subprocess.run(
        [sys.executable, '-S', '-c',
         f'import site, sys; sys.path.append({sysconfig.get_paths()["purelib"]!r}); '
         f'site.addsitedir({str(tmp_path)!r})\n' + MMDET_FIRST],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    without = subprocess.run(
        [sys.executable, '-S', '-c',
         f'import sys; sys.path.append({sysconfig.get_paths()["purelib"]!r})\n' + MMDET_FIRST],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "No module named 'mmcv._ext'" in without.stderr


def test_import_mmdeform_lets_mmdet_import_mmcv_ops():
    result = run_python('import mmdeform\n'
                        'import mmdet.apis, mmdet.engine, mmdet.evaluation, mmdet.models\n'
                        'import mmcv.ops\n')
    assert result.returncode == 0, result.stderr


def test_tools_import_mmdeform_before_mmdet():
    """In a fresh interpreter, mmcv.ops (which mmdet's models, evaluation and engine import)
    needs the placeholders: every tool imports mmdeform first."""
    late = []
    for tool in glob(osp.join(ROOT, 'tools', '**', '*.py'), recursive=True):
        with open(tool) as f:
            imports = sorted((node for node in ast.walk(ast.parse(f.read()))
                              if isinstance(node, (ast.Import, ast.ImportFrom))),
                             key=lambda node: node.lineno)
        for node in imports:
            names = [node.module] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names]
            if any(name.split('.')[0] == 'mmdeform' for name in names if name):
                break
            if any(name.split('.')[0] == 'mmdet' or name.startswith('mmcv.ops')
                   for name in names if name):
                late.append(f'{osp.relpath(tool, ROOT)}:{node.lineno}')
                break
    assert not late, f'mmdet or mmcv.ops imported before mmdeform in {late}'


DCN = dict(dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
           stage_with_dcn=(False, True, True, True))


@pytest.mark.calls_mmcv_placeholders
@needs_placeholders
@pytest.mark.parametrize('dcn_type, op', [('DCN', 'deform_conv_forward'),
                                          ('DCNv2', 'modulated_deform_conv_forward')])
def test_dcn_backbone_fails_with_the_placeholder_message(dcn_type, op):
    backbone = ResNet(depth=50, dcn=dict(DCN['dcn'], type=dcn_type),
                      stage_with_dcn=DCN['stage_with_dcn'])
    with pytest.raises(mmcv_ext.MissingMmcvOpError, match=f"'{op}'.*install full mmcv"):
        backbone(torch.rand(1, 3, 64, 64))


@pytest.mark.calls_mmcv_placeholders
@needs_placeholders
def test_config_with_a_dcn_backbone_fails_with_the_placeholder_message():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'deformable_detr_r50.py'))
    cfg.merge_from_dict(dict(model=dict(backbone=DCN)))
    detector = build_detector(cfg)
    batch = detector.data_preprocessor(fake_batch(), True)
    with pytest.raises(mmcv_ext.MissingMmcvOpError, match="'deform_conv_forward'"):
        detector(**batch, mode='loss')
