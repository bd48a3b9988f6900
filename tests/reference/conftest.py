import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test id (crc32, stable across runs) so failures reproduce."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
