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


# ---- the step split into begin_step (per-step scalars) and apply_update (what a CUDA graph captures) --
def _float32_run(make, steps=5, seed=3, split=False):
    rng = np.random.default_rng(seed)
    ps = [fc.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in ((4, 3), (7,))]
    opt = make()
    for _ in range(steps):
        for p in ps:
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
        if split:
            opt.begin_step(ps)
            opt.apply_update(ps)
        else:
            opt.step(ps)
    return [p.data for p in ps], opt


MAKERS = {"sgd-nesterov-wd-step": lambda: SGD(StepDecay(0.1, 2, 0.5), momentum=0.9, nesterov=True, weight_decay=0.01),
          "adamw-cosine": lambda: Adam(CosineDecay(0.01, 4, alpha=0.2), weight_decay=0.05)}


@pytest.mark.parametrize("name", list(MAKERS))
def test_float32_update_is_the_documented_formula_bitwise(name):
    """The scalars go through step_scalars (float64 on the host, as the kernels read them); the float32
    arithmetic must stay what csrc/ops/optimizer.h documents: lr rounds to float32 (a Python float
    times a float32 array), Adam's step stays float64."""
    got, opt = _float32_run(MAKERS[name])
    rng = np.random.default_rng(3)
    want = [rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (7,))]
    state = [[np.zeros_like(w), np.zeros_like(w)] for w in want]
    ref = MAKERS[name]()
    for t in range(1, 6):
        lr = float(ref.learning_rate(t - 1))
        for w, (a, b) in zip(want, state):
            g = rng.standard_normal(w.shape).astype(np.float32)
            if isinstance(ref, SGD):
                g = g + ref.weight_decay * w
                a *= ref.momentum
                a -= lr * g
                w += ref.momentum * a - lr * g
            else:
                a += (1 - ref.beta_1) * (g - a)
                b += (1 - ref.beta_2) * (g * g - b)
                w -= lr * ref.weight_decay * w
                w -= lr * np.sqrt(1 - ref.beta_2 ** t) / (1 - ref.beta_1 ** t) * a / (np.sqrt(b) + ref.epsilon)
    assert opt.iterations == 5
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(MAKERS))
def test_step_is_begin_step_then_apply_update(name):
    whole, _ = _float32_run(MAKERS[name])
    split, opt = _float32_run(MAKERS[name], split=True)
    assert opt.iterations == 5
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(a, b)


def test_config_round_trip_leaves_out_the_device_buffers():
    opt = Adam(CosineDecay(0.01, 4), weight_decay=0.1)
    _float32_run(lambda: opt)
    cfg = opt.get_config()
    assert not any(k.startswith("_") for k in cfg), cfg
    again = Adam.from_config(cfg)
    assert again.get_config() == cfg


@pytest.mark.gpu
@pytest.mark.skipif(not fc.cuda_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", list(MAKERS))
def test_gpu_multi_tensor_update_matches_the_reference_with_a_resident_table(name):
    """On the GPU: one buffer for the scalars and one table, reused while the addresses hold; the
    weights within 2 ulp of the NumPy reference (the kernels' documented arithmetic, FMA aside)."""
    import cupy
    rng = np.random.default_rng(4)
    init = [rng.standard_normal(s).astype(np.float32) for s in ((70000,), (9, 5))]   # > one chunk
    grads = [[rng.standard_normal(a.shape).astype(np.float32) for a in init] for _ in range(5)]
    cpu = [fc.tensor(a.copy(), requires_grad=True) for a in init]
    gpu = [fc.Tensor(cupy.asarray(a), device="cuda") for a in init]
    gpu_grads = [cupy.empty_like(p.data) for p in gpu]
    opt_cpu, opt_gpu = MAKERS[name](), MAKERS[name]()
    seen = []
    for step in grads:
        for p, g in zip(cpu, step):
            p.grad = g
        opt_cpu.step(cpu)
        for p, dst, g in zip(gpu, gpu_grads, step):
            dst.set(g)
            p.grad = dst
        opt_gpu.step(gpu)
        seen.append((opt_gpu._table, opt_gpu._device_scalars))
    assert all(t is seen[0][0] and b is seen[0][1] for t, b in seen)   # built once, rewritten in place
    for a, b in zip(gpu, cpu):
        np.testing.assert_array_max_ulp(cupy.asnumpy(a.data), b.data, maxulp=2)
