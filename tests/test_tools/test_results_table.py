"""The Markdown entries the measuring tools print for docs/results.md."""
import datetime
import os.path as osp

import torch
from tools_loader import load_tool

from mmdeform.utils.results_table import command_line, markdown_table, results_entry

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'get_flops.py')


def test_markdown_table():
    assert markdown_table(['a', 'b'], [[1, 'x y'], (2.5, '')]) == (
        '| a | b |\n|---|---|\n| 1 | x y |\n| 2.5 |  |')


def test_command_line_names_the_script_from_the_repository_and_quotes_arguments():
    assert command_line(TOOL, ['configs/a.py', '--shape', 800, 1200]) == (
        'python tools/analysis_tools/get_flops.py configs/a.py --shape 800 1200')
    assert command_line(TOOL, ['a b.py']) == "python tools/analysis_tools/get_flops.py 'a b.py'"


def test_results_entry_has_the_date_command_and_torch_then_the_table():
    before = datetime.datetime.now(datetime.timezone.utc).date()
    entry = results_entry(TOOL, ['x'], [[1]], argv=['c.py'])
    after = datetime.datetime.now(datetime.timezone.utc).date()
    first, blank, *table = entry.split('\n')
    assert first in {f'{day.isoformat()}, `python tools/analysis_tools/get_flops.py c.py` '
                     f'(torch {torch.__version__}, {torch.get_num_threads()} threads):'
                     for day in (before, after)}
    assert blank == '' and table == ['| x |', '|---|', '| 1 |']


def test_compile_speed_row():
    compile_speed = load_tool('analysis_tools/compile_speed.py')
    eager = dict(median_ms=900.0, min_ms=800.4, max_ms=1200.0, cpu_median_ms=1800.0)
    compiled = dict(median_ms=600.0, min_ms=550.0, max_ms=700.0, cpu_median_ms=1200.0)
    header, rows = compile_speed.results_table(eager, compiled, 31.6, 5.6e-8)
    assert len(header) == len(rows[0]) == 6
    assert rows == [['900 (800-1200)', '600 (550-700)', '1.50x', '1.50x', '32', '5.6e-08']]
