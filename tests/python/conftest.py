"""Shared fixtures of the model1 Python tests.

Run from the repository root after building the extension:
    PYTHONPATH=$PWD/build/python .venv/bin/python -m pytest -q tests/python
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # model1_reference


@pytest.fixture
def rng(request):
    # NOTE: a fixed seed per test (from its name) keeps failures reproducible.
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.name)) % (2**32)
    return np.random.default_rng(seed)
