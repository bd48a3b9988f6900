"""A converted ResNet-18-style network against the same network on torch's own kernels."""
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as TF  # noqa: E402

from fct_torch_helpers import ResNet18, close, twin  # noqa: E402

import fastconv.torch as fct  # noqa: E402


def _data(dtype, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("stem", ["maxpool", "cifar"])
def test_resnet18_logits_and_gradients_match(dtype, stem):
    ref, model = twin(lambda: ResNet18(width=8, stem=stem), dtype=dtype)
    swapped = {type(m).__name__ for m in model.modules()}
    assert "Conv2d" in swapped and all(not (type(m) is torch.nn.Conv2d) for m in model.modules())
    x, t = _data(dtype)
    logits, logits0 = model(x), ref(x)
    close(logits, logits0, scale=5)
    TF.cross_entropy(logits, t).backward()
    TF.cross_entropy(logits0, t).backward()
    params0 = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        # 20 layers of BN-normalised float32 reductions: allow a few x the per-op tolerance
        close(p.grad, params0[name].grad, scale=10, msg=f"grad of {name}")
    # BN running statistics were updated from identical batch statistics
    for (name, b), (_, b0) in zip(model.named_buffers(), ref.named_buffers()):
        if b.is_floating_point():
            close(b, b0, scale=5, msg=name)


def test_resnet18_eval_mode_and_channels_last():
    ref, model = twin(lambda: ResNet18(width=8), dtype=torch.float32)
    ref.eval(), model.eval()
    x, _ = _data(torch.float32, n=2)
    with torch.no_grad():
        close(model(x), ref(x), scale=5)
        model_cl = model.to(memory_format=torch.channels_last)   # the zero-copy layout for the GPU kernels
        close(model_cl(x.to(memory_format=torch.channels_last)), ref(x), scale=5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_resnet18_sgd_training_tracks_torch(dtype):
    ref, model = twin(lambda: ResNet18(width=8), dtype=dtype)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4) for m in (model, ref)]
    losses = []
    x, t = _data(dtype, n=8, seed=100)
    for step in range(5):
        step_losses = []
        for m, opt in zip((model, ref), opts):
            opt.zero_grad()
            loss = TF.cross_entropy(m(x), t)
            loss.backward()
            opt.step()
            step_losses.append(loss.item())
        losses.append(step_losses)
    # float64 tracks torch to rounding; float32 rounding differences are amplified by training
    # (BN over 8 samples at 1x1 spatial size) to ~1e-3 of a tensor's scale after 5 steps.
    loss_tol, param_tol = (1e-9, 1e-8) if dtype == torch.float64 else (1e-3, 1e-2)
    for ours, theirs in losses:
        assert abs(ours - theirs) <= loss_tol * max(1.0, abs(theirs)), losses
    assert losses[-1][0] < 0.5 * losses[0][0]    # it actually fits the batch
    params0 = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        err = (p - params0[name]).abs().max().item()
        assert err <= param_tol * params0[name].abs().max().item(), f"{name} after 5 SGD steps: off by {err}"


def test_converted_state_dict_is_the_torch_state_dict():
    ref, model = twin(lambda: ResNet18(width=8))
    sd, sd0 = model.state_dict(), ref.state_dict()
    assert list(sd) == list(sd0)
    assert all(sd[k].shape == sd0[k].shape for k in sd)
    fresh = ResNet18(width=8)
    fresh.load_state_dict(sd)                     # and back into plain torch
    fct.convert(fresh)
    fresh.load_state_dict(sd0)
