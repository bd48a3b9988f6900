"""fastconv.torch modules, convert(), state dicts, errors for what is unsupported, the CUDA branch."""
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import fastconv.torch as fct  # noqa: E402
from fastconv.torch import functional as F  # noqa: E402
from fct_torch_helpers import close  # noqa: E402


# ----------------------------------------------------------------------- modules vs torch's

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kw", [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=8, kernel_size=(3, 2), stride=(2, 3), padding=(1, 2), groups=2, bias=False),
    dict(in_channels=6, out_channels=6, kernel_size=3, padding="same", dilation=2, groups=6),
    dict(in_channels=4, out_channels=5, kernel_size=4, padding="valid", stride=3),
])
def test_conv2d_module_matches_torch(dtype, kw):
    torch.manual_seed(0)
    ref = nn.Conv2d(**kw, dtype=dtype)
    mod = fct.Conv2d(**kw, dtype=dtype)
    mod.load_state_dict(ref.state_dict())
    assert isinstance(mod, nn.Conv2d) and mod.weight.shape == ref.weight.shape
    x = torch.randn(2, kw["in_channels"], 10, 9, dtype=dtype, requires_grad=True)
    y, y0 = mod(x), ref(x)
    close(y, y0)
    dy = torch.randn_like(y0)
    params, params0 = [x, *mod.parameters()], [x, *ref.parameters()]
    for a, e in zip(torch.autograd.grad(y, params, dy), torch.autograd.grad(y0, params0, dy)):
        close(a, e)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                dict(kernel_size=(3, 2), stride=(1, 2), return_indices=True, ceil_mode=True)])
def test_max_pool2d_module_matches_torch(kw):
    mod, ref = fct.MaxPool2d(**kw), nn.MaxPool2d(**kw)
    assert isinstance(mod, nn.MaxPool2d)
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64, requires_grad=True)
    out, out0 = mod(x), ref(x)
    if kw.get("return_indices"):
        torch.testing.assert_close(out[1], out0[1])
        out, out0 = out[0], out0[0]
    torch.testing.assert_close(out, out0)
    dy = torch.randn_like(out0)
    close(torch.autograd.grad(out, x, dy)[0], torch.autograd.grad(out0, x, dy)[0])


@pytest.mark.parametrize("bias", [True, False])
def test_linear_module_matches_torch(bias):
    torch.manual_seed(0)
    ref, mod = nn.Linear(7, 3, bias=bias), fct.Linear(7, 3, bias=bias)
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 7, requires_grad=True)
    y, y0 = mod(x), ref(x)
    close(y, y0)
    dy = torch.randn_like(y0)
    for a, e in zip(torch.autograd.grad(y, [x, *mod.parameters()], dy),
                    torch.autograd.grad(y0, [x, *ref.parameters()], dy)):
        close(a, e)


def test_modules_construct_on_meta_and_infer_shapes():
    conv = fct.Conv2d(3, 8, 3, stride=2, padding=1, device="meta")
    pool = fct.MaxPool2d(3, 2, 1, ceil_mode=True)
    lin = fct.Linear(8, 4, device="meta")
    x = torch.empty(2, 3, 15, 15, device="meta")
    y = pool(conv(x))
    assert y.device.type == "meta" and y.shape == TF.max_pool2d(torch.empty(2, 8, 8, 8), 3, 2, 1, ceil_mode=True).shape
    assert lin(torch.empty(5, 8, device="meta")).shape == (5, 4)


def test_repr_says_fastconv():
    assert repr(fct.Conv2d(3, 4, 3)).startswith("fastconv.Conv2d(3, 4, kernel_size=(3, 3)")
    assert "fastconv.MaxPool2d" in repr(fct.MaxPool2d(2)) and "fastconv.Linear" in repr(fct.Linear(2, 3))


# ------------------------------------------------------------------------- state dicts

def test_state_dict_round_trip_both_ways():
    torch.manual_seed(0)
    kw = dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, padding=1)
    theirs, ours = nn.Conv2d(**kw), fct.Conv2d(**kw)
    ours.load_state_dict(theirs.state_dict())                  # torch checkpoint -> fastconv
    assert ours.weight.shape == (6, 2, 3, 3)                    # torch layout (K, C/groups, R, S)
    torch.testing.assert_close(ours.weight, theirs.weight)
    back = nn.Conv2d(**kw)
    back.load_state_dict(fct.Conv2d(**kw).state_dict())         # fastconv -> torch
    lin, lin0 = fct.Linear(5, 3), nn.Linear(5, 3)
    lin.load_state_dict(lin0.state_dict())
    assert lin.weight.shape == (3, 5)                           # torch layout (out, in)
    lin0.load_state_dict(lin.state_dict())
    assert set(fct.Conv2d(3, 4, 3, bias=False).state_dict()) == set(nn.Conv2d(3, 4, 3, bias=False).state_dict())


def test_checkpoint_file_loads_unchanged(tmp_path):
    # The checkpoint is read back in a fresh interpreter, as a user's script would: inside this
    # long test process, torch.load's weights-only unpickler has been seen to fail on an ordinary
    # state dict after unrelated tests ran (order-dependent, not reproduced in isolation).
    import subprocess
    import sys
    import textwrap
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 2))
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    x = torch.randn(2, 3, 8, 8)
    torch.save({"x": x, "y": model(x).detach()}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import torch
        from torch import nn
        import fastconv.torch as fct
        fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 2))
        report = fct.convert(fresh)
        assert len(report.swapped) == 3, report
        fresh.load_state_dict(torch.load({str(tmp_path / "ckpt.pt")!r}))
        io = torch.load({str(tmp_path / "io.pt")!r})
        torch.testing.assert_close(fresh(io["x"]), io["y"], rtol=1e-5, atol=1e-6)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------ convert

class MyConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2


class Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.reflect = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
        self.half = nn.Conv2d(4, 4, 1).half()
        self.custom = MyConv(4, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.dilated_pool = nn.MaxPool2d(2, dilation=2)
        self.up = nn.ConvTranspose2d(4, 4, 2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        self.shared = self.conv                        # one module, two names


def test_convert_report_swaps_what_it_can_and_says_why_not():
    model = Zoo()
    conv_weight, lin = model.conv.weight, model.head[1]
    hook_calls = []
    model.conv.register_forward_hook(lambda *a: hook_calls.append(1))
    report = fct.convert(model)
    assert report.model is model
    swapped = {name: kind for name, kind, _ in report.swapped}
    assert swapped == {"conv": "torch.nn.Conv2d", "pool": "torch.nn.MaxPool2d", "head.1": "torch.nn.Linear"}
    skipped = {name: reason for name, _, reason in report.skipped}
    assert "padding_mode='reflect'" in skipped["reflect"]
    assert "torch.float16" in skipped["half"]
    assert "subclass of torch.nn.Conv2d" in skipped["custom"]
    assert "dilation=2" in skipped["dilated_pool"]
    assert "no fastconv.torch equivalent" in skipped["up"]
    # same objects, same Parameters, hooks kept, sharing kept
    assert type(model.conv) is fct.Conv2d and model.shared is model.conv
    assert model.conv.weight is conv_weight and model.head[1] is lin and type(lin) is fct.Linear
    assert type(model.reflect) is nn.Conv2d and type(model.custom) is MyConv
    model.conv(torch.randn(1, 3, 4, 4))
    assert hook_calls == [1]
    text = str(report)
    assert text.startswith("fastconv.torch.convert: swapped 3 module(s), skipped 5")
    assert "reflect" in text and "-> fastconv.torch.Conv2d" in text
    again = fct.convert(model)
    assert not again.swapped and ("conv", "fastconv.torch.modules.Conv2d", "already a fastconv.torch module") in again.skipped


def test_convert_keeps_optimizer_working_and_root_module():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    report = fct.convert(model)
    assert type(model) is fct.Linear and report.swapped[0][0] == ""
    assert "<root>" in str(report)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    assert not torch.equal(model.weight, before)


def test_convert_not_inplace_and_strict():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"))
    report = fct.convert(model, inplace=False)
    assert type(model[0]) is nn.Conv2d and type(report.model[0]) is fct.Conv2d
    torch.testing.assert_close(report.model[0].weight, model[0].weight)
    with pytest.raises(ValueError, match=r"strict=True.*nothing was changed: 1 \(torch.nn.Conv2d\): padding_mode='circular'"):
        fct.convert(model, strict=True)
    assert type(model[0]) is nn.Conv2d                 # untouched on error
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        fct.convert(lambda x: x)


# ------------------------------------------------------------------- unsupported arguments

@pytest.mark.parametrize("call,exc,message", [
    (lambda: fct.Conv2d(3, 4, 3, padding_mode="reflect"), ValueError,
     r"padding_mode='reflect' is not supported.*padding_mode='zeros'"),
    (lambda: fct.Conv2d(3, 4, 3, dtype=torch.float16), TypeError, r"dtype=torch.float16 is not supported"),
    (lambda: fct.Linear(3, 4, dtype=torch.bfloat16), TypeError, r"dtype=torch.bfloat16 is not supported"),
    (lambda: fct.MaxPool2d(3, dilation=2), NotImplementedError, r"dilation=2 is not supported"),
    (lambda: fct.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "padding='same' is not supported for strided"),
])
def test_module_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


x4 = torch.randn(2, 4, 6, 6)
w4 = torch.randn(6, 2, 3, 3)


@pytest.mark.parametrize("call,exc,message", [
    (lambda: F.conv2d(x4.half(), w4.half()), TypeError, r"input has dtype torch.float16.*float32 and torch.float64"),
    (lambda: F.conv2d(x4.to(torch.int64), w4), TypeError, r"input has dtype torch.int64"),
    (lambda: F.conv2d(x4, w4.double()), TypeError, r"input \(torch.float32\) and weight \(torch.float64\)"),
    (lambda: F.conv2d(x4, w4), ValueError, r"groups=1, weight of shape \(6, 2, 3, 3\) expects input with 2 channels, but got 4"),
    (lambda: F.conv2d(x4, w4, groups=4), ValueError, r"out_channels \(6\) must be divisible by groups \(4\)"),
    (lambda: F.conv2d(x4, w4, groups=0), ValueError, r"groups must be a positive integer"),
    (lambda: F.conv2d(x4, w4, torch.randn(5), groups=2), ValueError, r"bias must have shape \(6,\)"),
    (lambda: F.conv2d(x4[0, 0], w4, groups=2), ValueError, r"expected a 3-D \(unbatched C, H, W\) or 4-D"),
    (lambda: F.conv2d(x4, w4, stride=2, padding="same", groups=2), ValueError, "not supported for strided"),
    (lambda: F.conv2d(x4, w4, padding="full", groups=2), ValueError, r"invalid padding string 'full'"),
    (lambda: F.conv2d(x4, torch.randn(6, 2, 9, 3), groups=2), ValueError, r"conv2d: kernel height 9.*larger than the padded input height 6"),
    (lambda: F.conv2d(x4, w4, stride=0, groups=2), ValueError, r"stride must be >= 1"),
    (lambda: F.max_pool2d(x4, 3, padding=2), ValueError, r"pad should be at most half of the kernel size"),
    (lambda: F.max_pool2d(x4, 2, dilation=2), NotImplementedError, r"dilation=2 is not supported"),
    (lambda: F.max_pool2d(x4.half(), 2), TypeError, r"input has dtype torch.float16"),
    (lambda: F.max_pool2d(x4, 7), ValueError, r"max_pool2d: kernel_size height 7 is larger than the padded input height 6"),
    (lambda: F.linear(torch.randn(3, 5), torch.randn(2, 4)), ValueError, r"does not match weight of shape \(2, 4\)"),
    (lambda: F.linear(torch.randn(3, 4), torch.randn(2, 4), torch.randn(3)), ValueError, r"bias must have shape \(2,\)"),
    (lambda: F.linear(torch.randn(3, 4), torch.randn(2, 4, 1)), ValueError, r"weight must be 2-D"),
    (lambda: F.linear([1.0], torch.randn(2, 1)), TypeError, r"input must be a torch.Tensor"),
])
def test_functional_errors(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_converted_module_rejects_padding_mode_changed_after_construction():
    conv = fct.Conv2d(3, 4, 3)
    conv.padding_mode = "replicate"
    with pytest.raises(ValueError, match="padding_mode='replicate' is not supported"):
        conv(torch.randn(1, 3, 5, 5))


# --------------------------------------------------------------------------- CUDA branch

class _FakeCudaTensor:
    """Stands in for a CUDA tensor on a CPU-only torch: the bridge picks its target from .device
    before touching any data, so the refusal must come first."""
    device = torch.device("cuda", 0)
    shape = (2, 4, 8, 8)


_cu = _FakeCudaTensor()


@pytest.mark.parametrize("op,args", [
    ("conv2d_fprop", (_cu, _cu, [1, 1], [0, 0, 0, 0], [1, 1], 2)),
    ("conv2d_dgrad", (_cu, _cu, [2, 4, 8, 8], [1, 1], [0, 0, 0, 0], [1, 1], 2)),
    ("conv2d_wgrad", (_cu, _cu, [6, 2, 3, 3], [1, 1], [0, 0, 0, 0], [1, 1], 2)),
    ("max_pool2d_fprop", (_cu, [2, 2], [2, 2], [0, 0, 0, 0])),
    ("max_pool2d_bprop", (_cu, _cu, [2, 4, 8, 8], [2, 2], [2, 2], [0, 0, 0, 0])),
    ("dense_fprop", (_cu, _cu, None)),
    ("dense_bprop", (_cu, _cu, _cu, True)),
])
def test_cuda_branch_refuses_without_fastconv_kernels(op, args):
    """Every op of the bridge refuses CUDA tensors with a clear error when neither GPU backend is
    available, instead of running torch's kernels."""
    from fastconv.torch import _kernels
    ok, reason = fct.cuda_kernels_status()
    if ok:
        pytest.skip("fastconv CUDA kernels are available here")
    assert "native" in reason and "jit" in reason
    with pytest.raises(RuntimeError,
                       match=r"fastconv CUDA kernels are not available.*never falls back to torch's own kernels"):
        getattr(_kernels, op)(*args)
