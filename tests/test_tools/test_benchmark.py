"""tools/analysis_tools/benchmark.py on the tiny config, its memory measure, and the mmdet
equivalent model that --compare-mmdet runs; tools/analysis_tools/benchmark_msda.py's command line
and CUDA table."""
import copy
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from tools_loader import load_tool

from mmdeform import mmcv_ext
from mmdeform.apis import init_detector
from mmdeform.utils.mmdet_equivalent import build_mmdet_equivalent, mmdet_model_cfg, variant_of

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CONFIG = osp.join(ROOT, 'tests', 'test_apis', 'tiny_deformable_detr.py')
STAGES = ['inference_batch1', 'inference_batch4', 'train_step_batch2']
FIGURES = {'batch_size', 'median_ms', 'min_ms', 'max_ms', 'images_per_s', 'peak_memory_mib'}


benchmark = load_tool('analysis_tools/benchmark.py')
benchmark_msda = load_tool('analysis_tools/benchmark_msda.py')


def _check_figures(results):
    assert list(results) == STAGES
    for stage, figures in results.items():
        assert figures.keys() == FIGURES, stage
        assert figures['min_ms'] <= figures['median_ms'] <= figures['max_ms']
        assert figures['images_per_s'] == pytest.approx(
            figures['batch_size'] / figures['median_ms'] * 1e3)
        assert figures['peak_memory_mib'] >= 0
    assert [results[stage]['batch_size'] for stage in STAGES] == [1, 4, 2]


def test_report_has_the_figures(tmp_path, capsys):
    out = str(tmp_path / 'report.json')
    report = benchmark.main([TINY_CONFIG, '--shape', '64', '64', '--repeats', '1',
                             '--warmup', '1', '--out', out])
    assert list(report['results']) == ['mmdeform'] and 'ratios' not in report
    _check_figures(report['results']['mmdeform'])
    assert report['shape'] == [64, 64] and report['repeats'] == 1
    with open(out) as f:
        assert json.load(f) == report
    printed = capsys.readouterr().out
    assert 'train_step_batch2: 1 warm-up, 1 timed run(s) each of mmdeform ...' in printed
    assert '| train step batch2 |' in printed
    assert '`python tools/analysis_tools/benchmark.py ' in printed


def test_compare_mmdet_reports_both_and_the_ratios():
    report = benchmark.main([TINY_CONFIG, '--shape', '64', '64', '--repeats', '1',
                             '--warmup', '1', '--compare-mmdet'])
    assert list(report['results']) == ['mmdeform', 'mmdet']
    for results in report['results'].values():
        _check_figures(results)
    ours, theirs = report['results']['mmdeform'], report['results']['mmdet']
    for stage in STAGES:
        assert report['ratios'][stage]['time'] == pytest.approx(
            theirs[stage]['median_ms'] / ours[stage]['median_ms'])


def test_inference_batches_and_bf16_reach_the_model(monkeypatch):
    args = benchmark.parse_args([TINY_CONFIG, '--shape', '64', '64', '--inference-batches', '3',
                                 '--bf16'])
    [(_, model, scope)], cfg = benchmark.build_models(args)
    seen = []
    test_step, train_step = model.test_step, model.train_step

    def recording_test_step(data):
        seen.append(('test', len(data['inputs']), torch.is_autocast_enabled('cpu')))
        return test_step(data)

    def recording_train_step(data, optim_wrapper):
        seen.append(('train', len(data['inputs']), type(optim_wrapper).__name__))
        return train_step(data, optim_wrapper)

    monkeypatch.setattr(model, 'test_step', recording_test_step)
    monkeypatch.setattr(model, 'train_step', recording_train_step)
    for stage in benchmark.stages(model, scope, cfg, args):
        model.train(stage.training)
        stage.run()
    assert seen == [('test', 3, True), ('train', 2, 'CpuAmpOptimWrapper')]


@pytest.mark.parametrize('argv', [['--warmup', '0'], ['--repeats', '0'], ['--shape', '16', '64'],
                                  ['--inference-batches', '1', '0']])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        benchmark.parse_args([TINY_CONFIG, *argv])


@pytest.mark.skipif(not mmcv_ext.placeholders_in_use(), reason='full mmcv: it has the kernels')
def test_compare_mmdet_on_cuda_needs_full_mmcv(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args([TINY_CONFIG, '--device', 'cuda', '--compare-mmdet'])
    assert "mmdet's model runs mmcv's CUDA kernels" in capsys.readouterr().err


def test_peak_memory_counts_memory_reused_from_freed_tensors():
    numel = 4 * 2**20  # 16 MiB of float32: below glibc's largest mmap threshold
    for _ in range(3):  # freed, such blocks stay in the heap for reuse
        torch.ones(numel)
    assert benchmark.peak_memory_mib(lambda: torch.ones(numel), 'cpu') >= 15.9
    assert benchmark.peak_memory_mib(lambda: None, 'cpu') < 4


@pytest.mark.parametrize('config, variant', [
    ('deformable_detr_r50_single_scale.py', 'single_scale'),
    ('deformable_detr_r50_single_scale_dc5.py', 'single_scale'),
    ('deformable_detr_r50.py', 'multi_scale'),
    ('deformable_detr_r50_refine.py', 'refine'),
    ('deformable_detr_r50_2stage.py', 'two_stage'),
])
def test_variants_of_our_configs(config, variant):
    model_cfg = Config.fromfile(osp.join(ROOT, 'configs', config)).model
    assert variant_of(model_cfg) == variant
    mmdet_cfg = mmdet_model_cfg(model_cfg)
    assert mmdet_cfg.encoder.layer_cfg.self_attn_cfg.batch_first  # mmcv's attention needs it
    assert mmdet_cfg.neck.bias is True  # ours, so the state dicts match


def test_mmdet_equivalent_has_our_weights_and_predictions():
    torch.manual_seed(0)
    ours = init_detector(TINY_CONFIG)
    ours.init_weights()
    theirs = build_mmdet_equivalent(ours, ours.cfg.model)
    assert type(theirs).__module__.startswith('mmdet.') and not theirs.training
    data = benchmark.synthetic_batch((64, 80), 2, num_classes=80)
    with torch.no_grad():
        expected = ours.test_step(copy.deepcopy(data))
        results = theirs.test_step(data)
    for got, want in zip(results, expected):
        got, want = got.pred_instances, want.pred_instances
        torch.testing.assert_close(got.scores, want.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.bboxes, want.bboxes, rtol=1e-4, atol=1e-3)
        assert torch.equal(got.labels, want.labels)


def test_mmdet_two_stage_needs_256_channels():
    cfg = Config.fromfile(TINY_CONFIG).model
    cfg.as_two_stage = True
    with pytest.raises(ValueError, match='only runs with embed_dims=256, the config has 32'):
        mmdet_model_cfg(cfg)


def test_msda_cuda_table_ratios():
    results = []
    for stage, batch in benchmark_msda.CUDA_SHAPES:
        for dtype in benchmark_msda.CUDA_DTYPES:
            for name, ms in [('forward', 1.0), ('backward (fast)', 2.0),
                             ('backward (deterministic)', 5.0), ('reference forward', 4.0),
                             ('reference forward+backward', 15.0)]:
                results.append(dict(stage=stage, batch=batch, dtype=dtype, name=name, ms=ms))
    rows = benchmark_msda.cuda_table(results).splitlines()[2:]
    assert len(rows) == len(benchmark_msda.CUDA_SHAPES) * len(benchmark_msda.CUDA_DTYPES)
    # deterministic / fast = 5 / 2; reference fwd+bwd / ours (1 + 2) = 15 / 3
    assert rows[0] == ('| encoder | 2 | fp32 | 1.000 | 2.000 | 5.000 | 2.50x | 4.000 | 15.000 '
                       '| 5.0x |')


@pytest.mark.skipif(torch.cuda.is_available(), reason='it would run on the GPU')
def test_msda_on_cuda_without_a_gpu_says_so():
    with pytest.raises(SystemExit, match='needs a CUDA GPU'):
        benchmark_msda.main(['--device', 'cuda'])


def test_msda_on_the_cpu_has_no_json_output(capsys):
    with pytest.raises(SystemExit):
        benchmark_msda.main(['--out', 'folder'])
    assert '--out: the CPU comparison prints its table only' in capsys.readouterr().err
