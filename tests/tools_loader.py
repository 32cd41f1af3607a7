"""Load a script of tools/ as a module, for the tests of the tools."""
import importlib.util
import os.path as osp

TOOLS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools')


def load_tool(path):
    """The module of ``tools/<path>``, e.g. ``load_tool('analysis_tools/benchmark.py')``."""
    name = 'tools_' + path[:-len('.py')].replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, osp.join(TOOLS, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
