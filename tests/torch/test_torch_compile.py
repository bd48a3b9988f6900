"""torch.compile(fullgraph=True) of converted models: no graph breaks, same results as eager."""
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

from fastconv.torch import functional as F  # noqa: E402
from fct_torch_helpers import SmallNet, close, twin  # noqa: E402

# torch.compile's own internals warn about this; nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_converted_model_has_no_graph_breaks():
    _, model = twin(SmallNet)
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 16, 16))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    # the custom ops are in the captured graph as single nodes, not decomposed into torch's kernels
    code = explanation.graphs[0].code
    assert "torch.ops.fastconv.conv2d_fprop" in code and "torch.ops.fastconv.max_pool2d_fprop" in code
    assert "torch.ops.fastconv.dense_fprop" in code and "conv2d(" not in code.replace("fastconv.conv2d", "")


def test_compile_aot_eager_fullgraph_matches_eager_and_torch():
    ref, model = twin(SmallNet)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 3, 16, 16)
    for inp in (x, x.to(memory_format=torch.channels_last)):
        y, y_eager, y_ref = compiled(inp), model(inp), ref(inp)
        close(y, y_eager)
        close(y, y_ref)
    # a training step through the compiled graph (backward = fastconv dgrad / wgrad / bprop ops)
    t = torch.tensor([0, 1, 2, 3])
    TF.cross_entropy(compiled(x), t).backward()
    TF.cross_entropy(ref(x), t).backward()
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        close(p.grad, ref_params[name].grad, scale=5, msg=name)


def test_compile_functional_dynamic_shapes():
    def f(x, w, w2, b):
        y = F.conv2d(x, w, None, 1, "same", 2)
        y, idx = F.max_pool2d(y, 3, 2, 1, ceil_mode=True, return_indices=True)
        return F.linear(F.conv2d(y, w2, b, 2, 1, 1, 2).flatten(2).mean(2), torch.ones(2, 6)), idx

    def f0(x, w, w2, b):
        y = TF.conv2d(x, w, None, 1, "same", 2)
        y, idx = TF.max_pool2d(y, 3, 2, 1, ceil_mode=True, return_indices=True)
        return TF.linear(TF.conv2d(y, w2, b, 2, 1, 1, 2).flatten(2).mean(2), torch.ones(2, 6)), idx

    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    w2, b = torch.randn(6, 2, 3, 3), torch.randn(6)
    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    torch._dynamo.utils.counters.clear()
    # sizes chosen so no two dims coincide (dynamo would specialise on the coincidence) and both
    # shapes take the same ceil_mode branch: one symbolic graph serves both
    for shape in [(5, 3, 11, 13), (7, 3, 15, 9)]:
        x = torch.randn(shape, requires_grad=True)
        (y, idx), (y0, idx0) = compiled(x, w, w2, b), f0(x, w, w2, b)
        close(y, y0, scale=5)
        torch.testing.assert_close(idx, idx0)
        for a, e in zip(torch.autograd.grad(y.sum(), (x, w)), torch.autograd.grad(y0.sum(), (x, w))):
            close(a, e, scale=5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def _tiny():
    # ends in a conv with 1x1 output: its dy has size-1 dims whose strides inductor may change
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 8, 4), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


@pytest.mark.slow
def test_compile_inductor_tiny_model():
    """The default backend (inductor, C++ codegen with gcc) around fastconv's opaque custom ops."""
    ref, model = twin(_tiny)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, 8, 8)
    y = compiled(x)
    close(y, ref(x))
    y.sum().backward()
    ref(x).sum().backward()
    for (name, p), p0 in zip(model.named_parameters(), ref.parameters()):
        close(p.grad, p0.grad, msg=name)


def test_output_layout_ignores_strides_of_size_one_dims():
    """The layout rule the fake and real implementations share must not read strides of size-1
    dims: inductor may hand the op an input whose size-1 strides differ from the traced ones."""
    from fastconv.torch._bridge import is_channels_last
    a = torch.randn(8, 16, 1, 1)
    b = a.as_strided(a.shape, (16, 1, 16, 16))          # channels_last strides, same memory
    assert is_channels_last(a) == is_channels_last(b) == False  # noqa: E712
    w = torch.randn(4, 16, 1, 1)
    for t in (a, b):
        assert torch.ops.fastconv.conv2d_fprop(t, w, [1, 1], [0, 0, 0, 0], [1, 1], 1).is_contiguous()
        assert torch.ops.fastconv.conv2d_dgrad(t, torch.randn(16, 3, 1, 1), [8, 3, 1, 1], [1, 1], [0, 0, 0, 0],
                                               [1, 1], 1).is_contiguous()


def test_torch_export_keeps_fastconv_ops():
    ref, model = twin(SmallNet)
    model.eval(), ref.eval()
    x = torch.randn(2, 3, 16, 16)
    program = torch.export.export(model, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"fastconv.conv2d_fprop.default", "fastconv.max_pool2d_fprop.default",
            "fastconv.dense_fprop.default"} <= targets
    with torch.no_grad():
        close(program.module()(x), ref(x))
