"""`fastconv bench --op train_step` on the CPU: the eager / graph / PyTorch rows, the reasons for the
ones that cannot run, FLOP counts from hand arithmetic, the PyTorch ResNet-18 mirroring fastconv's,
and the JSON rendered by benchmarks/make_results_md.py's logic."""
import json

import pytest

from fastconv.bench.cli import main
from fastconv.bench.results import render_markdown
from fastconv.bench.train_step import MODELS, model_step_flops


def resnet18_cifar_forward_macs() -> int:
    """By hand: a 3x3 stem to 64 channels at 32x32, four stages of two basic blocks (two 3x3 convs
    each; a 1x1 stride-2 projection in the first block of stages 2-4), then Dense(512 -> 10)."""
    macs = 32 * 32 * 64 * 27
    side, cin = 32, 64
    for stage, width in enumerate((64, 128, 256, 512)):
        if stage:
            side //= 2
            macs += side * side * width * cin * 9 + side * side * width * width * 9 + side * side * width * cin
            macs += 2 * side * side * width * width * 9
        else:
            macs += 4 * side * side * width * width * 9
        cin = width
    return macs + 512 * 10


def test_flops_per_step_match_hand_counts():
    assert model_step_flops("seed", 8) == 8 * 2_206_464          # benchmarks/NOTES.md
    assert model_step_flops("resnet18", 4) == 4 * 3 * 2 * resnet18_cifar_forward_macs()


def test_the_torch_resnet18_has_fastconvs_parameter_count():
    torch = pytest.importorskip("torch")
    import fastconv as fc
    from fastconv.bench.train_step import _torch_resnet18
    with fc.using_device("cpu"):
        model = fc.models.resnet18((32, 32, 3), 10)
        model._ensure_built((32, 32, 3))
    ours = sum(int(w.size) for w in model.trainable_weights)
    theirs = sum(p.numel() for p in _torch_resnet18(torch).parameters())
    assert ours == theirs


def test_cpu_run_has_all_four_rows_with_reasons_and_renders(tmp_path, capsys):
    out = tmp_path / "results" / "ts.json"
    rc = main(["bench", "--device", "cpu", "--op", "train_step", "--model", "seed", "--batch", "4",
               "--repeats", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    assert run["kind"] == "train_step" and run["config"]["models"] == ["seed"]
    (r,) = run["results"]
    assert (r["model"], r["batch"], r["dtype"]) == ("seed", 4, "fp32")
    impls = r["impls"]
    assert list(impls) == ["fastconv", "fastconv graph", "torch eager", "torch.compile"]
    assert impls["fastconv"]["images_per_s"] > 0 and impls["torch eager"]["images_per_s"] > 0
    graph = impls["fastconv graph"]
    assert graph["available"] is False and "the model is on the cpu" in graph["reason"]
    assert "pass --compile" in impls["torch.compile"]["reason"]
    assert r["ratio_fastconv_vs_eager"] > 0 and r["ratio_graph_vs_eager"] is None
    assert "fastconv graph" in printed and "CUDA graphs need the 'cuda' device" in printed
    md = render_markdown(out.parent, csrc=None)
    assert "| fastconv eager | fastconv graph | torch eager | torch.compile |" in md
    row = next(line for line in md.splitlines() if line.startswith("| seed | 4 | fp32 |"))
    assert row.count("n/a") == 2                                   # the graph and torch.compile columns


def test_unknown_model_is_a_usage_error(capsys):
    assert main(["bench", "--device", "cpu", "--op", "train_step", "--model", "seed,vgg99"]) == 2
    err = capsys.readouterr().err
    assert "--model must be one of" in err and "vgg99" in err and all(m in err for m in MODELS)


@pytest.mark.parametrize("dtype,policy", [("fp32", None), ("bf16", "bf16"), ("fp16", "fp16")])
def test_fastconv_step_compiles_the_model_in_the_asked_precision(dtype, policy):
    """--dtype bf16 runs fastconv's step under the bf16 policy (as PyTorch's autocast), not its default fp32."""
    from fastconv.bench.train_step import _fastconv_model
    model, xs, ys = _fastconv_model("seed", 4, 1, "cpu", 0, dtype)
    assert model.precision == policy and xs[0].shape == (4, 28, 28, 1) and len(ys) == 1
