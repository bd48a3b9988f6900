"""Central finite differences in float64 for anything built from Tensors."""
import numpy as np

import fastconv as fc


def check_gradients(fn, arrays, rng, eps=1e-6, rtol=1e-5, atol=1e-7, samples=12):
    """fn(*tensors) -> Tensor. Compares d<fn, w>/d(arrays) against central differences at a few
    random coordinates of each input (all coordinates for small inputs)."""
    tensors = [fc.tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    weight = rng.standard_normal(out.shape)
    out.backward(weight)

    def objective():
        with fc.no_grad():
            return float((fn(*[fc.tensor(a) for a in arrays]).numpy() * weight).sum())

    for i, (a, t) in enumerate(zip(arrays, tensors)):
        assert t.grad is not None, f"input {i} got no gradient"
        flat = a.reshape(-1)
        picks = range(flat.size) if flat.size <= samples else rng.choice(flat.size, samples, replace=False)
        for j in picks:
            old = flat[j]
            flat[j] = old + eps
            up = objective()
            flat[j] = old - eps
            down = objective()
            flat[j] = old
            numeric = (up - down) / (2 * eps)
            analytic = t.grad.reshape(-1)[j]
            assert abs(numeric - analytic) <= atol + rtol * max(abs(numeric), abs(analytic)), \
                f"input {i} index {j}: analytic {analytic} vs numeric {numeric}"
