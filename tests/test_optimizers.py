"""SGD and Adam against torch.optim on the same gradients; schedules against their formulas."""
import math

import numpy as np
import pytest

import fastconv as fc
from fastconv.optimizers import SGD, Adam, get_optimizer
from fastconv.schedules import CosineDecay, StepDecay

torch = pytest.importorskip("torch")


def _run(ours, make_theirs, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    init = rng.standard_normal((5, 4))
    p = fc.tensor(init.copy(), requires_grad=True)
    tp = torch.tensor(init.copy(), requires_grad=True)
    theirs = make_theirs([tp])
    for _ in range(steps):
        g = rng.standard_normal((5, 4))
        p.grad = g.copy()
        ours.step([p])
        tp.grad = torch.tensor(g)
        theirs.step()
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0),
                                                  (0.8, False, 1e-2)])
def test_sgd_matches_torch(momentum, nesterov, wd):
    _run(SGD(0.05, momentum=momentum, nesterov=nesterov, weight_decay=wd),
         lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=wd))


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_matches_torch_adamw(wd):
    # Keras' epsilon sits outside the bias correction; with a tiny epsilon the two forms agree.
    _run(Adam(0.01, epsilon=1e-12, weight_decay=wd),
         lambda ps: torch.optim.AdamW(ps, lr=0.01, eps=1e-12 / math.sqrt(1 - 0.999), weight_decay=wd), steps=1)
    _run(Adam(0.01, epsilon=1e-14, weight_decay=wd),
         lambda ps: torch.optim.AdamW(ps, lr=0.01, eps=1e-14, weight_decay=wd), steps=8)


def test_schedules():
    step = StepDecay(0.1, step_size=10, gamma=0.5)
    assert [step(s) for s in (0, 9, 10, 25)] == [0.1, 0.1, 0.05, 0.025]
    cos = CosineDecay(1.0, decay_steps=100, alpha=0.1)
    assert cos(0) == pytest.approx(1.0)
    assert cos(50) == pytest.approx(0.55)
    assert cos(100) == pytest.approx(0.1) and cos(500) == pytest.approx(0.1)
    opt = SGD(learning_rate=step)
    p = fc.tensor(np.zeros(1), requires_grad=True)
    for _ in range(11):
        p.grad = np.ones(1)
        opt.step([p])
    np.testing.assert_allclose(p.data, [-(10 * 0.1 + 0.05)])


def test_unknown_optimizer_string():
    with pytest.raises(ValueError, match="optimizer must be .*'adam'.*got 'adamm'"):
        get_optimizer("adamm")
