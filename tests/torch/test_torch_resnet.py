"""A converted ResNet-18-style network against the same network on torch's own kernels.

float64 is compared with torch to rounding. float32 results of this 20-layer BN stack are compared
through tests/baseline_error.py: ours must be as close to torch in float64 as torch in float32 is,
within a small factor, since how far float32 lands depends on the CPU's BLAS kernels."""
import copy

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as TF  # noqa: E402

from baseline_error import assert_within_baseline  # noqa: E402
from fct_torch_helpers import ResNet18, close, twin  # noqa: E402

import fastconv.torch as fct  # noqa: E402


def _data(dtype, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)


def _agree(ours, theirs, exact, what):
    """float64: ours equals torch's to rounding. float32: ours is as close to torch's float64
    result (`exact`) as torch's float32 one, within tests/baseline_error.py's factor."""
    if ours.dtype == torch.float64:
        close(ours, theirs, msg=what)
    else:
        assert_within_baseline(ours, theirs, exact, what)


def _exact(ref):
    """torch's model in float64 from the same float32 weights: the exact answer float32 is judged by."""
    return copy.deepcopy(ref).double()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("stem", ["maxpool", "cifar"])
def test_resnet18_logits_and_gradients_match(dtype, stem):
    ref, model = twin(lambda: ResNet18(width=8, stem=stem), dtype=dtype)
    exact = _exact(ref)
    swapped = {type(m).__name__ for m in model.modules()}
    assert "Conv2d" in swapped and all(not (type(m) is torch.nn.Conv2d) for m in model.modules())
    x, t = _data(dtype)
    logits, logits0, logits64 = model(x), ref(x), exact(x.double())
    _agree(logits, logits0, logits64, "logits")
    for out in (logits, logits0, logits64):
        TF.cross_entropy(out, t).backward()
    params0, params64 = dict(ref.named_parameters()), dict(exact.named_parameters())
    for name, p in model.named_parameters():
        _agree(p.grad, params0[name].grad, params64[name].grad, f"grad of {name}")
    # BN running statistics were updated from the same batch statistics
    for (name, b), b0, b64 in zip(model.named_buffers(), ref.buffers(), exact.buffers()):
        if b.is_floating_point():
            _agree(b, b0, b64, name)


def test_resnet18_eval_mode_and_channels_last():
    ref, model = twin(lambda: ResNet18(width=8), dtype=torch.float32)
    exact = _exact(ref)
    for m in (ref, model, exact):
        m.eval()
    x, _ = _data(torch.float32, n=2)
    with torch.no_grad():
        y0, y64 = ref(x), exact(x.double())
        _agree(model(x), y0, y64, "logits")
        model_cl = model.to(memory_format=torch.channels_last)   # the zero-copy layout for the GPU kernels
        _agree(model_cl(x.to(memory_format=torch.channels_last)), y0, y64, "logits (channels_last)")


def _start_from(model, opt, source, source_opt):
    """Give `model` and its SGD the weights, BN statistics and momentum of `source` (cast)."""
    model.load_state_dict(source.state_dict())
    for p, q in zip(model.parameters(), source.parameters()):
        if q in source_opt.state:
            opt.state[p]["momentum_buffer"] = source_opt.state[q]["momentum_buffer"].to(p.dtype).clone()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_resnet18_sgd_training_tracks_torch(dtype):
    """Five SGD steps (momentum, weight decay, BN running statistics) on one batch. Each step starts
    ours and torch's model from the state the float64 run reached, so a rounding difference is not
    carried into the next step: let run freely, one float32 run flips a ReLU or a max-pool's argmax
    where the other does not, and after 5 steps they part by 1e-5 to 1e-2 of a tensor's size
    depending on the BLAS kernels of the CPU."""
    ref, model = twin(lambda: ResNet18(width=8), dtype=dtype)
    exact = _exact(ref)
    models = (model, ref, exact)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4) for m in models]
    x, t = _data(dtype, n=8, seed=100)
    inputs = (x, x, x.double())
    losses, states = [], []
    for step in range(5):
        for m, opt in zip(models[:2], opts[:2]):
            _start_from(m, opt, exact, opts[2])
        step_losses = []
        for m, opt, xx in zip(models, opts, inputs):
            opt.zero_grad()
            loss = TF.cross_entropy(m(xx), t)
            loss.backward()
            opt.step()
            step_losses.append(loss.item())
        losses.append(step_losses)
        states.append([{k: v.clone() for k, v in m.state_dict().items() if v.is_floating_point()} for m in models])
    losses = torch.tensor(losses, dtype=torch.float64)
    _agree(losses[:, 0].to(dtype), losses[:, 1].to(dtype), losses[:, 2], "losses")
    assert losses[-1, 0] < 0.5 * losses[0, 0]    # it actually fits the batch
    for name in states[0][0]:
        ours, theirs, exact_ = (torch.stack([s[i][name] for s in states]) for i in range(3))
        _agree(ours, theirs, exact_, f"{name} over 5 SGD steps")


def test_converted_state_dict_is_the_torch_state_dict():
    ref, model = twin(lambda: ResNet18(width=8))
    sd, sd0 = model.state_dict(), ref.state_dict()
    assert list(sd) == list(sd0)
    assert all(sd[k].shape == sd0[k].shape for k in sd)
    fresh = ResNet18(width=8)
    fresh.load_state_dict(sd)                     # and back into plain torch
    fct.convert(fresh)
    fresh.load_state_dict(sd0)
