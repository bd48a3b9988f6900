"""fc.set_seed(n) fixes a whole training run: the same script in two fresh processes ends with
bitwise equal weights, and another seed ends elsewhere. Fresh processes, because a run that
inherits the generator state of an earlier one in the same process would hide an unseeded source."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")   # the digits ship with scikit-learn

ROOT = Path(__file__).resolve().parents[1]

# Every source of randomness a user meets: initializers, a Dropout layer's seed, fit's shuffling
# (no seed= given), the validation split, and a train_test_split / batches() without a seed.
SCRIPT = """
import sys
import numpy as np
import fastconv as fc
from fastconv import data
from fastconv.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

fc.set_seed(int(sys.argv[1]))
fc.deterministic(True)
(x, y), _ = data.load_digits()
(x, y), _ = data.train_test_split(x[:400], y[:400], test_size=0.25, seed=None)
first = next(iter(data.batches(x, y, batch_size=16)))[1]
model = fc.Sequential([Conv2D(8, (3, 3), activation="relu", input_shape=(8, 8, 1)), MaxPooling2D((2, 2)),
                       Flatten(), Dropout(0.25), Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
np.savez(sys.argv[2], first_batch=first, *model.get_weights())
"""


def _train(seed, out):
    subprocess.run([sys.executable, "-c", SCRIPT, str(seed), str(out)], cwd=ROOT, check=True, timeout=300)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
def test_set_seed_makes_fit_reproducible_across_processes(tmp_path):
    a, b, c = (_train(seed, tmp_path / f"run{i}.npz") for i, seed in enumerate((0, 0, 1)))
    assert a.keys() == b.keys() == c.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)   # bitwise: same seed, same run
    weights = [k for k in a if k.startswith("arr_") and a[k].dtype.kind == "f"]
    assert len(weights) == 4                                            # conv and dense kernels and biases
    assert all(not np.array_equal(a[k], c[k]) for k in weights), "seeds 0 and 1 ended with a same weight"
    assert not np.array_equal(a["first_batch"], c["first_batch"])
