"""Bad input gets a ValueError or TypeError naming the argument, what was expected and what was given."""
import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
from fastconv import callbacks, data, optimizers, schedules
from fastconv import layers as L
from fastconv.backends.tuning import TuningFileError

x4 = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
w4 = np.random.default_rng(1).random((3, 3, 3, 4), dtype=np.float32)


def _compiled(loss="categorical_crossentropy", classes=3):
    model = fc.Sequential([L.Flatten(input_shape=(4, 4, 1)), L.Dense(classes, activation="softmax")])
    model.compile(optimizer="adam", loss=loss)
    return model


x_small = np.random.default_rng(2).random((5, 4, 4, 1), dtype=np.float32)
y_small = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]]


def _fit(**kwargs):
    return _compiled().fit(x_small, y_small, **{"verbose": 0, **kwargs})

CASES = [
    ("conv x rank", lambda: F.conv2d(x4[0], w4), ValueError, r"x must be a rank-4 array \(N, H, W, C\), got array of shape \(8, 8, 3\)"),
    ("conv w rank", lambda: F.conv2d(x4, w4[0]), ValueError, r"w must be a rank-4 array"),
    ("conv channel mismatch", lambda: F.conv2d(x4, w4[:, :, :2]), ValueError, r"channel mismatch: x has 3 channels but w expects 2"),
    ("conv kernel too large", lambda: F.conv2d(x4, np.ones((9, 3, 3, 4), np.float32)), ValueError, r"kernel height 9 .* larger than the padded input height 8"),
    ("conv int dtype", lambda: F.conv2d(x4.astype(np.int32), w4), TypeError, r"x must be float32 or float64, got dtype int32"),
    ("conv dtype mix", lambda: F.conv2d(x4, w4.astype(np.float64)), TypeError, r"x and w must have the same dtype"),
    ("conv bad groups", lambda: F.conv2d(x4, w4, groups=2), ValueError, r"groups=2 must divide the input channels \(3\)"),
    ("conv bias shape", lambda: F.conv2d(x4, w4, bias=np.ones(3, np.float32)), ValueError, r"bias must have shape \(4,\)"),
    ("conv bad padding", lambda: F.conv2d(x4, w4, padding="full"), ValueError, r"padding must be 'valid', 'same'"),
    ("conv negative stride", lambda: F.conv2d(x4, w4, stride=0), ValueError, r"stride must be >= 1, got 0"),
    ("conv stride type", lambda: F.conv2d(x4, w4, stride=1.5), TypeError, r"stride must be an int, got float 1.5"),
    ("pool rank", lambda: F.max_pool2d(x4[0]), ValueError, r"x must be a rank-4 array"),
    ("pool too large", lambda: F.max_pool2d(x4, 9), ValueError, r"pool_size height 9 .* larger than the padded input"),
    ("dense feature mismatch", lambda: F.dense(np.ones((2, 5), np.float32), np.ones((4, 3), np.float32)), ValueError, r"x has 5 features but w expects 4"),
    ("dense rank", lambda: F.dense(x4, np.ones((4, 3), np.float32)), ValueError, r"x must be a rank-2 array"),
    ("labels out of range", lambda: F.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError, r"labels must be class ids in \[0, 3\), got values in \[0, 3\]"),
    ("labels wrong length", lambda: F.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])), ValueError, r"labels must have 2 entries"),
    ("labels one-hot width", lambda: F.softmax_cross_entropy(np.zeros((2, 3)), np.zeros((2, 4))), ValueError, r"labels must have shape \(2, 3\) \(one-hot\), got \(2, 4\)"),
    ("labels float ids", lambda: F.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])), TypeError, r"integer class ids, got dtype float64"),
    ("dropout rate", lambda: L.Dropout(1.0), ValueError, r"rate must be < 1.0, got 1.0"),
    ("Conv2D filters", lambda: L.Conv2D(0, 3), ValueError, r"filters must be >= 1, got 0"),
    ("Conv2D padding", lambda: L.Conv2D(4, 3, padding="causal"), ValueError, r"padding must be 'valid', 'same' or explicit ints, got 'causal'"),
    ("Dense units type", lambda: L.Dense("10"), TypeError, r"units must be an int, got str '10'"),
    ("Dense on images", lambda: L.Dense(3)(fc.tensor(x4)), ValueError, r"Dense 'dense.*' expects inputs \(batch, features\).*Flatten"),
    ("unknown optimizer", lambda: _compiled().compile(optimizer="adamw2", loss="mse"), ValueError, r"optimizer must be .* got 'adamw2'"),
    ("unknown loss", lambda: _compiled().compile(optimizer="adam", loss="hinge2"), ValueError, r"loss must be .* got 'hinge2'"),
    ("unknown metric", lambda: _compiled().compile(optimizer="adam", loss="mse", metrics=["auc9"]), ValueError, r"auc9"),
    ("unknown activation", lambda: L.Dense(3, activation="swishy"), ValueError, r"activation must be .* got 'swishy'"),
    ("fit x/y length", lambda: _compiled().fit(x_small, np.eye(3)[[0, 1, 2, 0]], verbose=0), ValueError, r"x and y must have the same number of samples, got 5 and 4"),
    ("fit int labels with categorical", lambda: _compiled().fit(x_small, np.arange(5) % 3, verbose=0), ValueError, r"categorical_crossentropy expects one-hot labels .* use 'sparse_categorical_crossentropy'"),
    ("fit labels out of range", lambda: _compiled("sparse_categorical_crossentropy").fit(x_small, np.array([0, 1, 2, 3, 0]), verbose=0), ValueError, r"class ids in \[0, 3\)"),
    ("fit wrong image shape", lambda: _compiled().fit(np.ones((5, 5, 4, 1), np.float32), np.eye(3)[[0, 1, 2, 0, 1]], verbose=0), ValueError, r"expects inputs of shape \(batch, 4, 4, 1\), got \(5, 5, 4, 1\)"),
    ("fit before compile", lambda: fc.Sequential([L.Dense(2)]).fit(np.ones((2, 3)), np.eye(2), verbose=0), RuntimeError, r"call model.compile"),
    ("validation_split", lambda: _compiled().fit(x_small, np.eye(3)[[0, 1, 2, 0, 1]], validation_split=1.0, verbose=0), ValueError, r"validation_split must be in \[0, 1\), got 1.0"),
    ("device name", lambda: fc.tensor(np.ones(2), device="tpu"), ValueError, r"device must be 'cpu' or 'cuda', got 'tpu'"),
    ("Input shape", lambda: fc.Input((0, 3)), ValueError, r"shape must be a tuple of positive ints"),
    ("dataset spec", lambda: data.load_dataset("imagenet"), ValueError, r"dataset must be one of digits, shapes, mnist:DIR, cifar10:DIR, got 'imagenet'"),
    ("mnist folder", lambda: data.load_mnist("/nonexistent/mnist"), FileNotFoundError, r"MNIST directory not found: /nonexistent/mnist"),
    ("negative label", lambda: data.to_categorical(np.array([0, -1])), ValueError, r"y must hold class ids >= 0, got the negative id -1"),
    ("label >= classes", lambda: data.to_categorical(np.array([0, 5]), 3), ValueError, r"class ids in \[0, 3\) for num_classes=3, got the id 5"),
    ("split lengths", lambda: data.train_test_split(np.ones((4, 2)), np.ones(3, int)), ValueError, r"got 4 and 3"),
    ("batch size", lambda: data.batches(np.ones((4, 2)), np.ones(4, int), batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    # counts, sizes and rates of compile / fit / evaluate / predict and the optimizers: never accepted
    # and ignored (epochs=0 trained nothing, batch_size=-1 evaluated nothing, a NaN rate trained to NaN)
    ("fit epochs zero", lambda: _fit(epochs=0), ValueError, r"epochs must be >= 1, got 0"),
    ("fit epochs float", lambda: _fit(epochs=2.5), TypeError, r"epochs must be an int, got float 2.5"),
    ("fit epochs str", lambda: _fit(epochs="3"), TypeError, r"epochs must be an int, got str '3'"),
    ("fit epochs bool", lambda: _fit(epochs=True), TypeError, r"epochs must be an int, got bool True"),
    ("fit initial_epoch past epochs", lambda: _fit(epochs=2, initial_epoch=2), ValueError, r"initial_epoch must be < epochs \(2\), got 2"),
    ("fit initial_epoch negative", lambda: _fit(initial_epoch=-1), ValueError, r"initial_epoch must be >= 0, got -1"),
    ("fit batch size", lambda: _fit(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    ("fit batch size negative", lambda: _fit(batch_size=-1), ValueError, r"batch_size must be >= 1, got -1"),
    ("fit batch size float", lambda: _fit(batch_size=16.0), TypeError, r"batch_size must be an int, got float 16.0"),
    ("fit batch size bool", lambda: _fit(batch_size=True), TypeError, r"batch_size must be an int, got bool True"),
    ("validation_split above 1", lambda: _fit(validation_split=1.5), ValueError, r"validation_split must be in \[0, 1\), got 1.5"),
    ("validation_split negative", lambda: _fit(validation_split=-0.1), ValueError, r"validation_split must be in \[0, 1\), got -0.1"),
    ("validation_split NaN", lambda: _fit(validation_split=float("nan")), ValueError, r"validation_split must be finite, got nan"),
    ("validation_split str", lambda: _fit(validation_split="0.2"), TypeError, r"validation_split must be a number, got str '0.2'"),
    ("fit seed negative", lambda: _fit(seed=-1), ValueError, r"seed must be >= 0, got -1"),
    ("fit seed float", lambda: _fit(seed=1.5), TypeError, r"seed must be an int, got float 1.5"),
    ("fit verbose str", lambda: _fit(verbose="yes"), TypeError, r"verbose must be 'auto' or an int >= 0, got str 'yes'"),
    ("fit verbose negative", lambda: _fit(verbose=-1), ValueError, r"verbose must be 'auto' or an int >= 0, got -1"),
    ("fit shuffle", lambda: _fit(shuffle="no"), TypeError, r"shuffle must be a bool, got str 'no'"),
    ("fit checkpoint_every zero", lambda: _fit(checkpoint_every=0), ValueError, r"checkpoint_every must be >= 1, got 0"),
    ("fit checkpoint_every bool", lambda: _fit(checkpoint_every=True), TypeError, r"checkpoint_every must be an int, got bool True"),
    ("evaluate batch size negative", lambda: _compiled().evaluate(x_small, y_small, batch_size=-1), ValueError, r"batch_size must be >= 1, got -1"),
    ("evaluate batch size zero", lambda: _compiled().evaluate(x_small, y_small, batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    ("evaluate verbose", lambda: _compiled().evaluate(x_small, y_small, verbose=0.5), TypeError, r"verbose must be 'auto' or an int >= 0, got float 0.5"),
    ("predict batch size negative", lambda: _compiled().predict(x_small, batch_size=-1), ValueError, r"batch_size must be >= 1, got -1"),
    ("predict batch size float", lambda: _compiled().predict(x_small, batch_size=2.5), TypeError, r"batch_size must be an int, got float 2.5"),
    ("SGD lr NaN", lambda: optimizers.SGD(float("nan")), ValueError, r"learning_rate must be finite, got nan"),
    ("SGD lr zero", lambda: optimizers.SGD(0.0), ValueError, r"learning_rate must be > 0.0, got 0.0"),
    ("SGD lr str", lambda: optimizers.SGD("0.1"), TypeError, r"learning_rate must be a number, got str '0.1'"),
    ("SGD momentum 1", lambda: optimizers.SGD(0.1, momentum=1.0), ValueError, r"momentum must be < 1.0, got 1.0"),
    ("SGD momentum NaN", lambda: optimizers.SGD(0.1, momentum=float("nan")), ValueError, r"momentum must be finite, got nan"),
    ("SGD nesterov str", lambda: optimizers.SGD(0.1, momentum=0.9, nesterov="yes"), TypeError, r"nesterov must be a bool, got str 'yes'"),
    ("SGD weight_decay negative", lambda: optimizers.SGD(0.1, weight_decay=-1e-4), ValueError, r"weight_decay must be >= 0.0, got -0.0001"),
    ("Adam lr inf", lambda: optimizers.Adam(float("inf")), ValueError, r"learning_rate must be finite, got inf"),
    ("Adam lr negative", lambda: optimizers.Adam(-1e-3), ValueError, r"learning_rate must be > 0.0, got -0.001"),
    ("Adam beta_1 1", lambda: optimizers.Adam(beta_1=1.0), ValueError, r"beta_1 must be < 1.0, got 1.0"),
    ("Adam beta_2 negative", lambda: optimizers.Adam(beta_2=-0.1), ValueError, r"beta_2 must be >= 0.0, got -0.1"),
    ("Adam epsilon zero", lambda: optimizers.Adam(epsilon=0.0), ValueError, r"epsilon must be > 0.0, got 0.0"),
    ("Adam weight_decay NaN", lambda: optimizers.Adam(weight_decay=float("nan")), ValueError, r"weight_decay must be finite, got nan"),
    ("Adam beta_1 bool", lambda: optimizers.Adam(beta_1=True), TypeError, r"beta_1 must be a number, got bool True"),
    ("StepDecay step_size", lambda: schedules.StepDecay(0.1, step_size=0), ValueError, r"step_size must be >= 1, got 0"),
    ("CosineDecay alpha", lambda: schedules.CosineDecay(0.1, decay_steps=10, alpha=1.5), ValueError, r"alpha must be <= 1.0, got 1.5"),
    ("EarlyStopping patience", lambda: callbacks.EarlyStopping(patience=-1), ValueError, r"patience must be >= 0, got -1"),
    ("EarlyStopping patience float", lambda: callbacks.EarlyStopping(patience=1.5), TypeError, r"patience must be an int, got float 1.5"),
    ("EarlyStopping min_delta NaN", lambda: callbacks.EarlyStopping(min_delta=float("nan")), ValueError, r"min_delta must be finite, got nan"),
    ("set_seed negative", lambda: fc.set_seed(-1), ValueError, r"seed must be >= 0, got -1"),
    ("set_seed float", lambda: fc.set_seed(0.5), TypeError, r"seed must be an int, got float 0.5"),
    ("set_seed too large", lambda: fc.set_seed(2**32), ValueError, r"seed must be <= 4294967295, got 4294967296"),
    ("resume without dir", lambda: _compiled().fit(x_small, np.eye(3)[[0, 1, 2, 0, 1]], resume=True, verbose=0), ValueError, r"resume=True needs checkpoint_dir"),
    ("set_weights count", lambda: _compiled().set_weights([np.ones(3)]), ValueError, r"set_weights expects 2 arrays, got 1"),
    ("backend override", lambda: _with_env("FASTCONV_BACKEND", "cudnn", lambda: F.relu(x4)), ValueError, r"FASTCONV_BACKEND must be one of \['native', 'jit', 'emulated', 'reference'\], got 'cudnn'"),
    ("device override", lambda: _with_env("FASTCONV_DEVICE", "gpu0", fc.default_device), ValueError, r"FASTCONV_DEVICE must be 'cpu' or 'cuda', got 'gpu0'"),
    ("set_precision", lambda: fc.set_precision("fp8"), ValueError, r"precision must be one of \['fp32', 'tf32', 'bf16', 'fp16'\], got 'fp8'"),
    ("precision override", lambda: _with_env("FASTCONV_PRECISION", "fp64", fc.get_precision), ValueError, r"FASTCONV_PRECISION must be one of .* got 'fp64'"),
    ("Conv2D precision", lambda: L.Conv2D(4, 3, precision="int8"), ValueError, r"Conv2D 'conv2d.*' precision must be one of .* got 'int8'"),
    ("Dense precision type", lambda: L.Dense(4, precision=16), ValueError, r"Dense 'dense.*' precision must be one of .* got 16"),
    ("compile precision", lambda: _compiled().compile(optimizer="adam", loss="mse", precision="half"), ValueError, r"compile\(precision=...\) must be one of .* got 'half'"),
    ("fit graph flag", lambda: _compiled().fit(x_small, np.eye(3)[[0, 1, 2, 0, 1]], graph="yes", verbose=0), TypeError, r"graph must be True, False or None .* got 'yes'"),
    ("torch kernel backend", lambda: _torch().set_kernel_backend("cuda"), ValueError, r"set_kernel_backend: name must be one of \['reference', 'emulated'\] .* got 'cuda'"),
    ("corrupt tuning file", lambda: _corrupt_tuning_file(), TuningFileError, r"tuning file .*bad.json is not valid JSON .* move it aside"),
]


def _torch():
    pytest.importorskip("torch")
    import fastconv.torch as ft
    return ft


def _corrupt_tuning_file():
    import tempfile
    from pathlib import Path as P

    from fastconv.backends import tuning
    path = P(tempfile.mkdtemp()) / "bad.json"
    path.write_text("{not json")
    try:
        return _with_env("FASTCONV_TUNING_FILE", str(path), tuning.current)
    finally:
        assert path.read_text() == "{not json"   # a bad file is reported, never overwritten


def _with_env(name, value, call):
    import os
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return call()
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


@pytest.mark.parametrize("argv,message", [
    (["train", "--epochs", "0"], "--epochs must be a positive int, got 0"),
    (["train", "--lr", "-1"], "--lr must be positive"),
    (["train", "--lr", "inf"], "--lr must be positive and finite, got inf"),
    (["train", "--lr", "nan"], "--lr must be positive and finite, got nan"),
    (["train", "--epochs", "-3"], "--epochs must be a positive int, got -3"),
    (["train", "--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'"),
    (["train", "--batch-size", "0"], "--batch-size must be a positive int, got 0"),
    (["train", "--seed", "-1"], "--seed must be an int in [0, 2**32), got -1"),
    (["bench", "--limit", "-2"], "argument --limit: must be an int >= 0, got -2"),
    (["bench", "--threads", "-1"], "argument --threads: must be an int >= 0, got -1"),
    (["bench", "--seed", "-1"], "argument --seed: must be an int >= 0, got -1"),
    (["profile", "--warmup", "-1"], "argument --warmup: must be an int >= 0, got -1"),
    (["tune", "--suite", "resnet50", "--batch", "0"], "argument --batch: must be a positive int, got 0"),
    (["train", "--dataset", "imagenet", "--quiet"], "dataset must be one of"),
    (["train", "--device", "tpu", "--quiet"], "--device must be 'cpu' or 'cuda', got 'tpu'"),
    (["train", "--precision", "fp8", "--quiet"], "invalid choice: 'fp8'"),
    (["tune", "--suite", "resnet50", "--op", "fft"], "--op 'fft' is not one of ['dgrad', 'fprop', 'gemm', 'wgrad']"),
])
def test_cli_reports_bad_arguments(argv, message, capsys):
    from fastconv.cli import main
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit with 2
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name,call,exc,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_reported_clearly(name, call, exc, message):
    with pytest.raises(exc, match=message):
        call()
