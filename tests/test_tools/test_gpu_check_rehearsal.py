"""`make gpu-check` (tools/misc/gpu_check.sh) rehearsed end to end on the CPU, so that the one
short lease of a GPU machine is not spent on an import error.

Stand-ins: a GPU probe that answers compute capability 9.0, the op already built in place of
the build (GPU_CHECK_PREBUILT=1; `make check-cuda-build` compiles the CUDA build with the same
setup.py and tools/misc/cuda_home.sh), and compute-sanitizers on PATH, one that refuses the
device as it does on some runtimes, one that runs the program. Every step must get past its
imports to where it needs a GPU; the training path runs its CPU rehearsal sizes. Without the
kit, mmcv, mmengine and mmdet are made unimportable (a sitecustomize on PYTHONPATH), as on the
GPU machine: every script the check runs must still import.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from tools_loader import load_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CHECK = osp.join(ROOT, 'tools', 'misc', 'gpu_check.sh')
STEPS = ['build', 'kit', 'tests', 'no-sync', 'benchmark', 'training', 'memcheck']
BLOCKER = '''import sys


class WithoutTheKit:
    """What the GPU machine lacks: importing it fails as there."""

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmcv', 'mmengine', 'mmdet'):
            raise ModuleNotFoundError(f'No module named {name!r} (rehearsal)', name=name)


sys.meta_path.insert(0, WithoutTheKit())
'''
REFUSING_SANITIZER = '''#!/bin/sh
echo "========= COMPUTE-SANITIZER"
echo "========= Error: Device not supported. Please refer to the documentation."
exit 255
'''
# Runs the program after the sanitizer's options, and shows the allocator setting it ran with.
PASSING_SANITIZER = '''#!/bin/sh
while [ $# -gt 0 ]; do
  case $1 in --tool|--error-exitcode) shift 2 ;; --*) shift ;; *) break ;; esac
done
echo "========= COMPUTE-SANITIZER, PYTORCH_NO_CUDA_MEMORY_CACHING=$PYTORCH_NO_CUDA_MEMORY_CACHING"
"$@"
status=$?
echo "========= ERROR SUMMARY: 0 errors"
exit $status
'''


def write_executable(path, text):
    path.write_text(text)
    path.chmod(0o755)


def run_check(tmp_path, sanitizer, without_kit, training_args=None):
    """Runs the check into tmp_path/out; returns its stdout, summary.json and statuses."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    write_executable(bin_dir / 'probe', '#!/bin/sh\necho 9.0\n')
    write_executable(bin_dir / 'compute-sanitizer', sanitizer)
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', PYTHON=sys.executable,
               GPU_CHECK_PROBE=str(bin_dir / 'probe'), GPU_CHECK_PREBUILT='1',
               GPU_KIT_DIR=str(tmp_path / 'no-kit'))
    env.pop('OUT', None)
    if without_kit:
        (tmp_path / 'blocker').mkdir()
        (tmp_path / 'blocker' / 'sitecustomize.py').write_text(BLOCKER)
        env['PYTHONPATH'] = str(tmp_path / 'blocker')
    if training_args:
        env['GPU_CHECK_TRAINING_ARGS'] = training_args
    out = tmp_path / 'out'
    result = subprocess.run(['bash', CHECK, str(out)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert (out / 'summary.json').is_file(), result.stdout + result.stderr
    files = sorted(os.listdir(out))
    assert len(files) <= 8 and {'summary.md', 'summary.json'} <= set(files), files
    summary = json.loads((out / 'summary.json').read_text())
    statuses = {step['name']: step['status'] for step in summary['steps']}
    assert list(statuses) == STEPS, result.stdout
    # Needing a GPU is not a pass.
    assert result.returncode == 1 and not summary['passed']
    return result.stdout, summary, statuses, out


def test_rehearsal_without_the_kit(tmp_path):
    stdout, summary, statuses, out = run_check(tmp_path, REFUSING_SANITIZER, without_kit=True)
    assert statuses == {
        'build': 'passed', 'kit': 'skipped', 'tests': 'needs a GPU', 'no-sync': 'skipped',
        'benchmark': 'needs a GPU', 'training': 'skipped', 'memcheck': 'unavailable'}, stdout
    notes = {step['name']: step['note'] for step in summary['steps']}
    assert 'Device not supported' in notes['memcheck']
    # the CUDA tests collected, at least as many as must pass on a GPU, each skipped for want
    # of a GPU alone
    collected = re.match(r'0 passed, 0 failed, (\d+) skipped', notes['tests'])
    assert collected and int(collected[1]) >= 90, notes['tests']
    assert 'STEP tests: needs a GPU' in stdout and 'STEP benchmark: needs a GPU' in stdout
    assert 'needs a CUDA GPU' in (out / 'benchmark.log').read_text()


def test_rehearsal_with_the_kit(tmp_path):
    stdout, summary, statuses, out = run_check(tmp_path, PASSING_SANITIZER, without_kit=False,
                                               training_args='--device cpu --tiny')
    # The no-sync tests run on the meta device; CUDA ones among them would need a GPU.
    assert statuses.pop('no-sync') in ('passed', 'needs a GPU'), stdout
    assert statuses == {
        'build': 'passed', 'kit': 'passed', 'tests': 'needs a GPU', 'benchmark': 'needs a GPU',
        'training': 'passed', 'memcheck': 'needs a GPU'}, stdout
    assert 'PYTORCH_NO_CUDA_MEMORY_CACHING=1' in (out / 'memcheck.log').read_text()
    training = summary['training']
    assert training['deterministic']['ok']
    assert training['deterministic']['losses'][0] == training['deterministic']['losses'][1]
    for precision in ('fp32', 'bf16'):
        assert training['training'][precision]['iterations'] == 3
        assert list(training['r50'][precision]) == [
            'inference_batch1', 'inference_batch2', 'train_step_batch2']
        assert list(training['huggingface'][precision]) == ['inference_batch1',
                                                            'inference_batch2']
    assert '## Training path' in (out / 'summary.md').read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason='it would run on the GPU')
def test_training_check_stops_after_its_imports_without_a_gpu(capsys):
    training_check = load_tool('misc/gpu_training_check.py')
    with pytest.raises(SystemExit) as stop:
        training_check.parse_args(['--device', 'cuda'])
    assert stop.value.code == 3
    assert 'needs a CUDA GPU' in capsys.readouterr().err


JUNIT = '<testsuites><testsuite>{}</testsuite></testsuites>'
PASSED = '<testcase name="a"/>'
SKIPPED_NO_GPU = '<testcase name="b"><skipped message="needs a CUDA GPU and the CUDA build"/>' \
    '</testcase>'
SKIPPED_OTHER = '<testcase name="c"><skipped message="needs onnx"/></testcase>'
FAILED = '<testcase name="d"><failure message="assert 0"/></testcase>'


@pytest.mark.parametrize('cases, minimum, code', [
    ([PASSED] * 3, 3, 0),
    ([PASSED] * 2, 3, 1),  # too few ran
    ([PASSED] * 3 + [SKIPPED_NO_GPU], 3, 3),  # a skip on the GPU is a failure to run
    ([SKIPPED_NO_GPU] * 3, 3, 3),
    ([PASSED, SKIPPED_OTHER], 1, 1),
    ([PASSED] * 3 + [FAILED, SKIPPED_NO_GPU], 3, 1),
])
def test_junit_judgement(tmp_path, cases, minimum, code):
    report = load_tool('misc/gpu_check_report.py')
    path = tmp_path / 'junit.xml'
    path.write_text(JUNIT.format(''.join(cases)))
    assert report.judge_junit(str(path), minimum)[0] == code
