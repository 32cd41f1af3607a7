"""The bookkeeping of tools/misc/gpu_check.sh, standard library only (it runs where mmcv,
mmengine and mmdet may be absent).

    gpu_check_report.py junit REPORT.xml --min N
        Judges a pytest --junitxml report: prints one line and exits 0 when at least N tests
        passed and none failed or skipped, 3 ("needs a GPU") when too few ran and every skip was
        for want of CUDA, 1 otherwise.
    gpu_check_report.py summary STEPS.tsv OUT_DIR [--attach NAME=FILE.json] [--section T=FILE]
        Writes OUT_DIR/summary.json (the steps, and each attached JSON under its NAME) and
        OUT_DIR/summary.md (the steps' table, then each section: a title and a file's text).
        STEPS.tsv: one line per step, name, status, seconds, limit and note, tab-separated.
"""
import argparse
import json
import os.path as osp
import re
import sys
import xml.etree.ElementTree as ET

NEEDS_GPU = 3
WANT_OF_CUDA = re.compile(r'cuda|gpu', re.IGNORECASE)


def judge_junit(path, minimum):
    """(exit code, one line) for a pytest junit report."""
    counts = dict(passed=0, failed=0, skipped=0)
    skip_reasons = set()
    for case in ET.parse(path).getroot().iter('testcase'):
        outcome = 'passed'
        for child in case:
            if child.tag in ('failure', 'error'):
                outcome = 'failed'
            elif child.tag == 'skipped':
                outcome = 'skipped'
                skip_reasons.add(child.get('message', ''))
        counts[outcome] += 1
    line = (f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
            f'(at least {minimum} must pass, none skip)')
    if counts['failed'] == 0 and counts['skipped'] == 0 and counts['passed'] >= minimum:
        return 0, line
    if counts['failed'] == 0 and skip_reasons and all(map(WANT_OF_CUDA.search, skip_reasons)):
        return NEEDS_GPU, f'{line}; skipped: {"; ".join(sorted(skip_reasons))}'
    return 1, line


def read_steps(path):
    steps = []
    with open(path) as f:
        for line in f:
            name, status, seconds, limit, note = line.rstrip('\n').split('\t')
            steps.append(dict(name=name, status=status, seconds=int(seconds), limit_s=int(limit),
                              note=note))
    return steps


def write_summary(steps_file, out_dir, attachments, sections):
    steps = read_steps(steps_file)
    summary = dict(passed=all(s['status'] in ('passed', 'skipped', 'unavailable')
                              for s in steps), steps=steps)
    for name, path in attachments:
        if osp.isfile(path):
            with open(path) as f:
                summary[name] = json.load(f)
    with open(osp.join(out_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    lines = ['# make gpu-check', '', '| step | status | seconds (limit) | note |',
             '|---|---|---|---|']
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} ({s['limit_s']}) | {s['note']} |"
              for s in steps]
    for title, path in sections:
        text = open(path).read().strip() if osp.isfile(path) else ''
        if text:
            lines += ['', f'## {title}', '', text]
    with open(osp.join(out_dir, 'summary.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def pair(text):
    name, sep, value = text.partition('=')
    if not sep:
        raise argparse.ArgumentTypeError(f'{text!r}: expected NAME=FILE')
    return name, value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    junit = commands.add_parser('junit')
    junit.add_argument('report')
    junit.add_argument('--min', type=int, default=1)
    summary = commands.add_parser('summary')
    summary.add_argument('steps')
    summary.add_argument('out_dir')
    summary.add_argument('--attach', type=pair, action='append', default=[])
    summary.add_argument('--section', type=pair, action='append', default=[])
    args = parser.parse_args(argv)
    if args.command == 'junit':
        code, line = judge_junit(args.report, args.min)
        print(line)
        return code
    write_summary(args.steps, args.out_dir, args.attach, args.section)
    return 0


if __name__ == '__main__':
    sys.exit(main())
