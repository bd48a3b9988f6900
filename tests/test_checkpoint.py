"""fit(checkpoint_dir=..., resume=True): a run killed with SIGKILL mid-epoch and resumed ends with
bitwise the same weights as an uninterrupted run; damaged checkpoints are reported, never used."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv as fc

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import fastconv as fc
    from fastconv.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

    out, ckpt, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fc.set_seed(0)
    rng = np.random.default_rng(1)
    x = rng.random((40, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 3, 40)
    model = fc.Sequential([Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(2), Flatten(),
                           Dropout(0.3), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Kill(fc.callbacks.Callback):
        steps = 0
        def on_train_batch_end(self, batch, logs=None):
            Kill.steps += 1
            if Kill.steps == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    model.fit(x, y, epochs=3, batch_size=8, seed=7, verbose=0, callbacks=[Kill()],
              checkpoint_dir=ckpt or None, checkpoint_every=2, resume=bool(ckpt))
    np.savez(out, *model.get_weights())
""")


def _run(tmp_path, name, ckpt, kill_at):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{name}.npz"
    proc = subprocess.run([sys.executable, str(script), str(out), ckpt, str(kill_at)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    return proc, out


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    proc, reference = _run(tmp_path, "reference", "", 0)
    assert proc.returncode == 0, proc.stderr
    ckpt = str(tmp_path / "ckpt")
    proc, out = _run(tmp_path, "killed", ckpt, 8)  # epoch 2, step 3 of 5: after the step-2 checkpoint
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and os.path.exists(os.path.join(ckpt, "checkpoint.fastconv"))
    proc, out = _run(tmp_path, "resumed", ckpt, 0)
    assert proc.returncode == 0, proc.stderr
    with np.load(reference) as a, np.load(out) as b:
        assert a.files == b.files
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key


def _trained_one_epoch(optimizer, checkpoint_dir):
    fc.set_seed(0)
    model = fc.models.seed_model((8, 8, 1), 3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    y = np.arange(16) % 3
    model.fit(x, y, epochs=1, verbose=0, checkpoint_dir=checkpoint_dir)
    return model, x, y


def test_corrupt_checkpoint_is_reported_and_left_alone(tmp_path):
    model, x, y = _trained_one_epoch("adam", tmp_path)
    path = tmp_path / "checkpoint.fastconv"
    damaged = path.read_bytes()[:-100]
    path.write_bytes(damaged)
    with pytest.raises(ValueError, match="checkpoint file .* is corrupt or truncated"):
        model.fit(x, y, epochs=2, verbose=0, checkpoint_dir=tmp_path, resume=True)
    assert path.read_bytes() == damaged


def test_nonfinite_loss_stops_before_updating_and_names_the_checkpoint(tmp_path):
    model, x, y = _trained_one_epoch("sgd", tmp_path)
    before = model.get_weights()
    x[9, 0, 0, 0] = np.nan
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 1: the training loss became nan.*last good checkpoint"):
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
