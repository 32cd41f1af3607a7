"""Renaming a state dict's keys between two layouts with one table of prefix pairs, read in
either direction.

A table lists ``(old, new)`` key prefixes; ``{n}`` in a prefix stands for a number (a layer,
a level) and carries over to the same place in the other prefix. The first pair whose old prefix
starts a key renames it, so a more specific prefix goes before a more general one.
"""
import re


def _pattern(prefix):
    return re.compile('^' + re.escape(prefix).replace(re.escape('{n}'), r'(\d+)'))


def _replacement(prefix):
    parts = prefix.split('{n}')
    return ''.join(part + (rf'\g<{i + 1}>' if i < len(parts) - 1 else '')
                   for i, part in enumerate(parts))


def rename_keys(state_dict, prefix_pairs, layout):
    """``state_dict`` with every key renamed by the first matching ``(old, new)`` pair.

    Raises:
        KeyError: naming the first key that no pair matches, as a key of ``layout`` (e.g.
            "the authors' checkpoint").
    """
    rules = [(_pattern(old), _replacement(new)) for old, new in prefix_pairs]
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            if pattern.match(key):
                renamed[pattern.sub(replacement, key, count=1)] = value
                break
        else:
            raise KeyError(f'unknown key in {layout}: {key}')
    return renamed


def reversed_pairs(prefix_pairs):
    """The same table read the other way: ``(new, old)`` pairs."""
    return [(new, old) for old, new in prefix_pairs]
