"""Every layer in float64: output shapes from shape inference, and gradients with respect to the
input and every weight against central finite differences."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import layers as L

from gradcheck import check_gradients

F64 = {"dtype": "float64"}

CASES = [
    ("conv_valid", lambda: L.Conv2D(4, 3, **F64), (2, 7, 6, 3)),
    ("conv_same_stride2", lambda: L.Conv2D(5, (3, 2), strides=2, padding="same", **F64), (2, 7, 9, 2)),
    ("conv_dilation", lambda: L.Conv2D(3, 3, dilation_rate=2, activation="relu", **F64), (1, 9, 8, 2)),
    ("conv_groups", lambda: L.Conv2D(6, 3, groups=3, padding="same", **F64), (2, 5, 5, 3)),
    ("conv_depthwise_asym_pad", lambda: L.Conv2D(4, 3, groups=4, padding=((2, 0), (1, 3)), **F64), (1, 5, 6, 4)),
    ("conv_1x1_stride3", lambda: L.Conv2D(3, 1, strides=3, **F64), (2, 8, 7, 2)),
    ("dense_softmax", lambda: L.Dense(5, activation="softmax", **F64), (3, 7)),
    ("dense_tanh", lambda: L.Dense(4, activation="tanh", **F64), (3, 6)),
    ("maxpool", lambda: L.MaxPooling2D(2, **F64), (2, 6, 7, 3)),
    ("maxpool_same_overlap", lambda: L.MaxPooling2D(3, strides=2, padding="same", **F64), (2, 7, 6, 2)),
    ("avgpool_same", lambda: L.AveragePooling2D(3, strides=2, padding="same", **F64), (2, 7, 5, 2)),
    ("global_avg", lambda: L.GlobalAveragePooling2D(**F64), (3, 4, 5, 2)),
    ("flatten", lambda: L.Flatten(**F64), (2, 3, 4, 2)),
    ("batchnorm", lambda: L.BatchNormalization(**F64), (4, 3, 3, 5)),
    ("sigmoid", lambda: L.Activation("sigmoid", **F64), (3, 5)),
    ("leaky_relu", lambda: L.ReLU(negative_slope=0.1, **F64), (3, 5)),
]


@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] for c in CASES])
def test_layer_gradients_float64(name, make, shape):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    layer = make()
    x = rng.standard_normal(shape)
    y = layer(fc.tensor(x), training=True)
    assert y.shape[1:] == layer.compute_output_shape(shape[1:])
    keys = list(layer.params)

    def fn(x_t, *ws):
        saved = dict(layer.params)
        layer.params.update(zip(keys, ws))
        try:
            return layer.call(x_t, training=True)
        finally:
            layer.params.update(saved)

    check_gradients(fn, [x] + [layer.params[k].data.copy() for k in keys], rng)


def test_dropout_gradient_uses_the_same_mask():
    rng = np.random.default_rng(5)
    layer = L.Dropout(0.4, seed=123, **F64)
    x = rng.standard_normal((4, 10))
    xt = fc.tensor(x, requires_grad=True)
    y = layer(xt, training=True)
    y.backward(np.ones_like(x))
    kept = y.numpy() != 0
    np.testing.assert_allclose(xt.grad, kept / 0.6)
    np.testing.assert_allclose(y.numpy()[kept], x[kept] / 0.6)
    assert np.array_equal(layer(fc.tensor(x), training=False).numpy(), x)


def test_merge_layers_gradients():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((2, 3, 3, 4))
    check_gradients(lambda s, t: L.Add()([s, t]), [a, b], rng)
    c = rng.standard_normal((2, 3, 3, 2))
    check_gradients(lambda s, t: L.Concatenate()([s, t]), [a, c], rng)


def test_batchnorm_running_statistics_follow_keras_rule():
    rng = np.random.default_rng(7)
    layer = L.BatchNormalization(momentum=0.9, **F64)
    x = rng.standard_normal((8, 2, 2, 3)) * 3 + 1
    layer(fc.tensor(x), training=True)
    mean, var = x.reshape(-1, 3).mean(0), x.reshape(-1, 3).var(0)
    np.testing.assert_allclose(layer.state["moving_mean"].data, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.state["moving_variance"].data, 0.9 + 0.1 * var, rtol=1e-12)
    y = layer(fc.tensor(x), training=False).numpy()
    expected = (x - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_batchnorm_inference_gradients():
    rng = np.random.default_rng(8)
    layer = L.BatchNormalization(**F64)
    layer(fc.tensor(rng.standard_normal((4, 3))), training=True)
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    gamma.data = rng.standard_normal(3)
    check_gradients(lambda x, g, b: fc.functional.batch_norm(x, g, b, layer.state["moving_mean"],
                                                             layer.state["moving_variance"], training=False),
                    [rng.standard_normal((5, 3)), gamma.data.copy(), beta.data.copy()], rng)


def test_shape_inference_and_wrong_input_shape():
    conv = L.Conv2D(8, 3, padding="same", strides=2)
    y = conv(fc.tensor(np.random.default_rng(0).random((2, 9, 9, 3), dtype=np.float32)))
    assert y.shape == (2, 5, 5, 8)
    assert conv.params["kernel"].shape == (3, 3, 3, 8)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, 9, 9, 3\)"):
        conv(fc.tensor(np.ones((2, 9, 9, 4), np.float32)))
