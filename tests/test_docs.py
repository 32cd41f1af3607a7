"""The docs stay navigable and short: every relative link in README.md and docs/*.md reaches an
existing file and, with #anchor, one of its headings (GitHub's slugs); the README stays within
150 lines and all Markdown within 1,300 (issue 21)."""
import glob
import os.path as osp
import re

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))
CODE_BLOCK = re.compile(r'^```.*?^```', re.S | re.M)


def heading_slugs(path):
    """The anchors GitHub gives the headings of a Markdown file."""
    slugs = set()
    for line in CODE_BLOCK.sub('', open(path).read()).splitlines():
        if line.startswith('#'):
            base = re.sub(r'[^\w\- ]', '', line.lstrip('#').strip().lower()).replace(' ', '-')
            slug, n = base, 0
            while slug in slugs:
                n += 1
                slug = f'{base}-{n}'
            slugs.add(slug)
    return slugs


def relative_links(path):
    text = CODE_BLOCK.sub('', open(path).read())
    return [t for t in re.findall(r'\]\(([^)\s]+)\)', text) if not re.match(r'[a-z]+:', t)]


def test_heading_slugs():
    assert heading_slugs(osp.join(ROOT, 'docs', 'results.md')) >= {
        'the-op-against-mmcvs', 'torchcompile', 'set-up-tests-and-demo'}


@pytest.mark.parametrize('page', PAGES, ids=lambda p: osp.relpath(p, ROOT))
def test_relative_links_resolve(page):
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition('#')
        target = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
        if not osp.exists(target) or (anchor and anchor not in heading_slugs(target)):
            broken.append(link)
    assert not broken, f'{osp.relpath(page, ROOT)}: links that reach nothing: {broken}'


def test_markdown_stays_short():
    lines = {osp.relpath(p, ROOT): len(open(p).read().splitlines()) for p in PAGES}
    assert lines['README.md'] <= 150, lines
    assert sum(lines.values()) <= 1300, lines
