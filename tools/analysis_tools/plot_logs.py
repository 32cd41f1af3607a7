"""Plot losses and metrics over the iterations from training logs:
``python tools/analysis_tools/plot_logs.py WORK_DIR_OR_JSON [...] --keys loss coco/bbox_mAP
--out curves.png [--legend NAME ...]``.

Each path is a work directory, a run directory or a ``scalars.json`` (see
:func:`mmdeform.utils.read_scalars`); one subplot per key, one line per path.
"""
import argparse
import os

import matplotlib

matplotlib.use('Agg')  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from mmdeform.utils import read_scalars  # noqa: E402

# Below this many points a curve (e.g. a metric validated each epoch) gets markers.
_MARKER_BELOW = 50


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Plot losses and metrics from training logs')
    parser.add_argument('paths', nargs='+', metavar='WORK_DIR_OR_JSON',
                        help='work directories, run directories or scalars.json files')
    parser.add_argument('--keys', nargs='+', default=['loss'],
                        help='logged keys to plot, e.g. loss lr coco/bbox_mAP')
    parser.add_argument('--out', required=True, help='the image to write, e.g. curves.png')
    parser.add_argument('--legend', nargs='+', help='a name per path (default: the paths)')
    parser.add_argument('--title', help='title of the figure')
    args = parser.parse_args(argv)
    if args.legend is not None and len(args.legend) != len(args.paths):
        parser.error(f'--legend has {len(args.legend)} names for {len(args.paths)} paths')
    return args


def plot_curves(runs, keys, title=None):
    """A figure with one subplot per key and one line per run.

    Args:
        runs (list[tuple[str, dict]]): (name, curves from :func:`read_scalars`) per run.
        keys (list[str]): the keys to plot; each must be in at least one run.

    Returns:
        matplotlib.figure.Figure
    """
    for key in keys:
        if not any(key in curves for _, curves in runs):
            available = sorted(set().union(*(curves for _, curves in runs)))
            raise KeyError(f'{key!r} is in none of the logs; logged keys: {", ".join(available)}')
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 3 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for name, curves in runs:
            if key in curves:
                iters, values = curves[key]
                marker = 'o' if len(iters) < _MARKER_BELOW else None
                ax.plot(iters, values, marker=marker, label=name)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend()
    axes[-1, 0].set_xlabel('iteration')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv=None):
    args = parse_args(argv)
    names = args.legend or args.paths
    runs = [(name, read_scalars(path)) for name, path in zip(names, args.paths)]
    fig = plot_curves(runs, args.keys, args.title)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out)
    plt.close(fig)
    print(f'{", ".join(args.keys)} of {len(runs)} run(s) plotted to {args.out}')


if __name__ == '__main__':
    main()
