"""The tape: topological backward, accumulation, no_grad, deep graphs."""
import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F


def test_shared_subexpression_accumulates_gradient():
    x = fc.tensor(np.array([1.5, -2.0, 3.0]), requires_grad=True)
    y = x * x + x * 3.0          # dy/dx = 2x + 3
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)


def test_gradients_accumulate_across_backward_calls():
    x = fc.tensor(np.array([2.0, 4.0]), requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad, [7.0, 7.0])


def test_no_grad_records_nothing():
    x = fc.tensor(np.ones(3), requires_grad=True)
    with fc.no_grad():
        y = x * 2.0
    assert not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_deep_graph_does_not_hit_recursion_limit():
    x = fc.tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_broadcast_add_reduces_gradient_to_operand_shape():
    a = fc.tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    b = fc.tensor(np.random.default_rng(1).standard_normal((3,)), requires_grad=True)
    (a + b).sum().backward()
    np.testing.assert_allclose(b.grad, np.full(3, 4.0))
    np.testing.assert_allclose(a.grad, np.ones((4, 3)))


def test_nonscalar_backward_needs_grad():
    x = fc.tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(ValueError, match="grad must be given"):
        (x * 2.0).backward()


def test_concatenate_splits_gradient():
    rng = np.random.default_rng(2)
    a = fc.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = fc.tensor(rng.standard_normal((2, 5)), requires_grad=True)
    y = F.concatenate([a, b], axis=-1)
    w = rng.standard_normal((2, 8))
    y.backward(w)
    np.testing.assert_allclose(a.grad, w[:, :3])
    np.testing.assert_allclose(b.grad, w[:, 3:])


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="float"):
        fc.tensor(np.arange(3), requires_grad=True)
