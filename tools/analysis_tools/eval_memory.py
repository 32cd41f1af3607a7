"""Peak memory of an evaluation against the number of images it covers.

``python tools/analysis_tools/eval_memory.py CONFIG CHECKPOINT --num-images 250 1000 4000``
(``--cfg-options test_evaluator.type=CocoMetric`` measures mmdet's metric instead)

For each count, writes that many shapes images (mmdeform.datasets.shapes, the val split of a
dataset of its own under WORK_DIR) and runs tools/test.py on them in a fresh process, with the
data loaded in that process (num_workers=0), so its peak resident memory covers the model, the
data and the metric's accumulated results. Flat memory: the peak grows by the results alone
(a few kB per image), not by the images.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

from mmdeform.datasets.shapes import generate_split
from mmdeform.utils.results_table import results_entry

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Runs a command (argv[2:]) and writes the peak resident memory (kB) of its largest process to
# the file argv[1].
_PEAK_RSS_OF = ('import resource, subprocess, sys; subprocess.run(sys.argv[2:], check=True); '
                'open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN)'
                '.ru_maxrss))')


def parse_args():
    parser = argparse.ArgumentParser(description='Peak memory of evaluation vs number of images')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--num-images', type=int, nargs='+', default=[250, 1000, 4000])
    parser.add_argument('--work-dir', default='work_dirs/eval_memory')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='more key=value config changes passed to tools/test.py')
    return parser.parse_args()


def peak_rss_mb(config, checkpoint, data_root, work_dir, cfg_options=()):
    test = [sys.executable, osp.join(ROOT, 'tools/test.py'), config, checkpoint,
            '--work-dir', work_dir,
            '--cfg-options', f'test_dataloader.dataset.data_root={data_root}',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            f'test_evaluator.ann_file={data_root}/annotations/instances_val.json', *cfg_options]
    peak_file = osp.join(work_dir, 'peak_rss_kb')
    os.makedirs(work_dir, exist_ok=True)
    subprocess.run([sys.executable, '-c', _PEAK_RSS_OF, peak_file, *test], check=True)
    with open(peak_file) as f:
        return int(f.read()) / 1024  # ru_maxrss is in kB on Linux


def main():
    args = parse_args()
    rows = []
    for num in args.num_images:
        data_root = osp.join(args.work_dir, f'shapes_{num}')
        if not osp.isfile(osp.join(data_root, 'annotations/instances_val.json')):
            generate_split(data_root, 'val', num)
        peak = peak_rss_mb(args.config, args.checkpoint, data_root,
                           osp.join(args.work_dir, f'run_{num}'), args.cfg_options)
        rows.append((num, peak))
        print(f'{num} images: peak RSS {peak:.0f} MB', flush=True)
    print(results_entry(__file__, ['images', 'peak RSS (MB)'],
                        [(num, f'{peak:.0f}') for num, peak in rows]))


if __name__ == '__main__':
    main()
