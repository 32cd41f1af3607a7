"""Load a script of tools/ as a module, and run it in the test process, for the tests of the
tools."""
import importlib.util
import os.path as osp
import sys
import uuid

TOOLS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools')


def load_tool(path):
    """The module of ``tools/<path>``, e.g. ``load_tool('analysis_tools/benchmark.py')``."""
    name = 'tools_' + path[:-len('.py')].replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, osp.join(TOOLS, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(tool, monkeypatch, *argv):
    """``tool.main()`` (tools/train.py, tools/test.py) with the command line ``argv``, in this
    process. A new experiment name per run: runs of one experiment share mmengine's message hub.
    """
    monkeypatch.setattr(sys, 'argv', [f'{tool.__name__}.py', *argv, '--cfg-options',
                                      f'experiment_name={uuid.uuid4().hex}'])
    tool.main()
