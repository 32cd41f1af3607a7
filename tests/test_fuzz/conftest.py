"""Hypothesis profiles of the fuzz tests: 'ci' (the default) draws the same examples on every
run, so a CI failure reproduces; HYPOTHESIS_PROFILE=explore draws new ones each run."""
import os

from hypothesis import settings

settings.register_profile('ci', derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile('explore', derandomize=False, database=None, deadline=None,
                          print_blob=True)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))
