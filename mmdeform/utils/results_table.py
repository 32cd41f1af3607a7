"""Measured figures as Markdown, ready to paste into docs/results.md: the date, the command that
measured them and the torch build, then a table."""
import datetime
import os.path as osp
import shlex
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def command_line(script, argv=None):
    """The command that runs ``script`` with ``argv`` (default: this process's arguments), with
    the script's path relative to the repository."""
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(['python', osp.relpath(osp.abspath(script), ROOT), *map(str, argv)])


def markdown_table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(map(str, row)) + ' |' for row in rows]
    return '\n'.join(lines)


def results_entry(script, header, rows, argv=None):
    """A docs/results.md entry: "DATE, `COMMAND` (torch VERSION, N threads):", then the table."""
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return (f'{date}, `{command_line(script, argv)}` (torch {torch.__version__}, '
            f'{torch.get_num_threads()} threads):\n\n{markdown_table(header, rows)}')
