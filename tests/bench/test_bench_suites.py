"""Shape suites: the JSON files match their derivation, the derivations match the networks, the loader
validates, and suites expand into the right cases."""
import json

import pytest

from fastconv.bench import derive
from fastconv.bench.suites import (SuiteError, available_suites, default_suites_dir, expand_cases, load_suite,
                                   load_suites, validate_suite)

SUITES = ["gemm", "mobilenet_v1", "resnet50", "seed", "vgg16"]


def test_every_suite_loads_and_the_files_are_the_derivation():
    assert available_suites() == SUITES
    for name in SUITES:
        s = load_suite(name)
        assert s.name == name and s.problems
        assert (default_suites_dir() / f"{name}.json").read_text() == derive.dumps(derive.build(name)), \
            f"{name}.json differs from the derivation: run python -m fastconv.bench.derive"
        assert set(s.dtypes) == {"fp32", "tf32", "fp16", "bf16"} and {1, 32, 128, 256} <= set(s.batches)
    assert derive.main(["--check"]) == 0


def test_resnet50_convs():
    s = load_suite("resnet50")
    convs = s.of_kind("conv2d")
    # distinct convs: stem 1 + res2 4 (1x1 reduce of block a and of blocks b-c, 3x3, 1x1 expand =
    # projection shortcut) + 6 in each of res3-5 (reduce a, 3x3/2 a, expand, projection /2, reduce, 3x3)
    assert len(convs) == 1 + 4 + 3 * 6 == 23
    # every layer: stem + 16 bottlenecks x 3 + 4 projections = 53
    assert sum(p.count for p in convs) == 1 + 16 * 3 + 4 == 53
    stem = s.problem("conv1_7x7_s2")
    assert (stem["H"], stem["W"], stem["C"], stem["K"], stem["R"], stem["S"]) == (224, 224, 3, 64, 7, 7)
    assert tuple(stem["stride"]) == (2, 2) and stem["out"] == [112, 112]
    assert s.problem("res2_1x1_reduce")["C"] == 256 and s.problem("res2_1x1_reduce")["K"] == 64
    assert s.problem("res2a_1x1_downsample").name == "res2_1x1_expand"      # same geometry, merged
    ds = [p for p in convs if "downsample" in p.name]
    assert [p.name for p in ds] == ["res3a_1x1_downsample_s2", "res4a_1x1_downsample_s2", "res5a_1x1_downsample_s2"]
    assert all(tuple(p["stride"]) == (2, 2) and p["R"] == 1 for p in ds)
    pool = s.problem("pool1_3x3_s2")
    assert (pool["H"], pool["C"], tuple(pool["pool"]), tuple(pool["stride"])) == (112, 64, (3, 3), (2, 2))
    assert pool["out"] == [56, 56]
    assert tuple(map(tuple, pool["padding"])) == ((1, 1), (1, 1))


def test_resnet50_matches_fastconvs_own_model():
    """Independent check: the 53 Conv2D layers of fastconv.models.resnet50() at 224x224 have exactly the
    suite's geometries (padding aside: the zoo pads 'same', the suite symmetric, same output sizes)."""
    import fastconv as fc
    from fastconv.layers import Conv2D
    model = fc.models.resnet50()
    got = sorted((l.input_shape[0], l.input_shape[2], l.filters, l.kernel_size[0], l.strides[0],
                  l.compute_output_shape(l.input_shape)[0]) for l in model.layers if isinstance(l, Conv2D))
    want = sorted((i["H"], i["C"], i["K"], i["R"], i["stride"][0], i["out"][0])
                  for i in derive.resnet50_conv_instances())
    assert len(got) == 53 and got == want
    suite = {(p["H"], p["C"], p["K"], p["R"], p["stride"][0], p["out"][0]): p.count
             for p in load_suite("resnet50").of_kind("conv2d")}
    for key in set(got):
        assert suite[key] == got.count(key)


def test_vgg16():
    s = load_suite("vgg16")
    convs = s.of_kind("conv2d")
    assert sum(p.count for p in convs) == 13 and len(convs) == 9
    assert all((p["R"], p["S"], tuple(p["stride"])) == (3, 3, (1, 1)) and p["out"] == [p["H"], p["W"]] for p in convs)
    assert s.problem("conv5_3").name == "conv5_1" and s.problem("conv5_1").count == 3
    pools = s.of_kind("maxpool")
    assert [(p["H"], p["C"], p["out"][0]) for p in pools] == [(224, 64, 112), (112, 128, 56), (56, 256, 28),
                                                                (28, 512, 14), (14, 512, 7)]
    assert s.problem("fc6_25088x4096")["K"] == 7 * 7 * 512


def test_mobilenet_v1_depthwise():
    convs = load_suite("mobilenet_v1").of_kind("conv2d")
    assert sum(p.count for p in convs) == 13 and len(convs) == 9
    assert all(p["groups"] == p["C"] == p["K"] and p["R"] == p["S"] == 3 for p in convs)
    assert {p["stride"][0] for p in convs} == {1, 2}
    assert [p["out"][0] for p in convs if p["stride"][0] == 2] == [56, 28, 14, 7]


def test_seed_and_gemm():
    s = load_suite("seed")
    conv, pool, dense = s.problems
    assert (conv["H"], conv["C"], conv["K"], conv["R"], conv["out"]) == (28, 1, 64, 3, [26, 26])
    assert (pool["H"], pool["C"], pool["out"]) == (26, 64, [13, 13])
    assert (dense["M"], dense["K"], dense["N"]) == ("batch", 10816, 10)
    g = load_suite("gemm")
    squares = [p for p in g.problems if p.batch_free]
    assert [p["M"] for p in squares] == [1024, 2048, 4096, 8192] and all(p["M"] == p["N"] == p["K"] for p in squares)
    assert {p.name for p in g.problems if not p.batch_free} == {
        "seed_dense_10816x10", "vgg16_fc6_25088x4096", "vgg16_fc7_4096x4096", "vgg16_fc8_4096x1000",
        "resnet50_fc_2048x1000"}


def _suite(**problem):
    base = {"name": "p", "kind": "conv2d", "H": 8, "W": 8, "C": 4, "K": 4, "R": 3, "S": 3}
    base.update(problem)
    return {"name": "t", "problems": [base]}


@pytest.mark.parametrize("bad,match", [
    (dict(out=[7, 7]), "does not match"),
    (dict(groups=3), "groups=3 must divide"),
    (dict(R=11), "larger than the padded input"),
    (dict(stride=[0, 1]), "stride"),
    (dict(padding=[[1, 1]]), "padding"),
    (dict(kind="conv3d"), "kind must be"),
    (dict(Z=1), "unknown field"),
    (dict(H="8"), "H must be an int"),
    (dict(count=0), "count"),
])
def test_validation_errors(bad, match):
    with pytest.raises(SuiteError, match=match):
        validate_suite(_suite(**bad))


def test_validation_of_suite_level_fields():
    ok = _suite()
    assert validate_suite(ok).problems[0]["out"] == [6, 6]
    with pytest.raises(SuiteError, match="used twice"):
        validate_suite({"name": "t", "problems": [ok["problems"][0], dict(ok["problems"][0])]})
    with pytest.raises(SuiteError, match="dtypes"):
        validate_suite(dict(ok, dtypes=["fp8"]))
    with pytest.raises(SuiteError, match="non-empty"):
        validate_suite({"name": "t", "problems": []})
    with pytest.raises(SuiteError, match="exceeds half the window"):
        validate_suite({"name": "t", "problems": [{"name": "q", "kind": "maxpool", "H": 8, "W": 8, "C": 1,
                                                    "pool": [2, 2], "padding": [[2, 2], [0, 0]]}]})
    with pytest.raises(SuiteError, match="an int or"):
        validate_suite({"name": "t", "problems": [{"name": "g", "kind": "gemm", "M": "rows", "N": 1, "K": 1}]})


def test_load_by_path_and_name_mismatch(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(dict(_suite(), name="mine")))
    assert load_suite(str(path)).name == "mine"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_suite()))
    with pytest.raises(SuiteError, match="does not match the file name"):
        load_suite(str(other))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SuiteError, match="not valid JSON"):
        load_suite(str(tmp_path / "broken.json"))
    with pytest.raises(SuiteError, match="unknown suite"):
        load_suite("no_such_suite")


def test_without_the_suites_folder_the_derivation_stands_in(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_SUITES_DIR", str(tmp_path / "missing"))
    s = load_suite("resnet50")
    assert len(s.of_kind("conv2d")) == 23 and "built-in derivation" in s.source
    assert available_suites() == SUITES


def test_expand_cases():
    seed, gemm = load_suites("seed,gemm")
    cases, skipped = expand_cases([seed], ["conv2d_fprop", "maxpool"], [1, 32], ["fp32", "tf32"])
    assert [(c.op, c.dtype, c.batch) for c in cases] == [
        ("conv2d_fprop", "fp32", 1), ("conv2d_fprop", "fp32", 32), ("conv2d_fprop", "tf32", 1),
        ("conv2d_fprop", "tf32", 32), ("maxpool", "fp32", 1), ("maxpool", "fp32", 32)]
    assert any("tf32" in what for what, _ in skipped)          # max-pool has no tf32 mode
    # a fixed-size GEMM runs once whatever the batch; M = batch runs per batch
    cases, _ = expand_cases([gemm], ["gemm"], [1, 32], ["bf16"])
    names = [(c.problem.name, c.batch) for c in cases]
    assert names.count(("square_1024", None)) == 1 and ("seed_dense_10816x10", 32) in names
    # CPU defaults: fp32 and the suite's cpu_batch
    cases, _ = expand_cases([seed], ["gemm"], cpu=True)
    assert [(c.dtype, c.batch) for c in cases] == [("fp32", 8)]
    cases, _ = expand_cases([load_suite("resnet50")], ["conv2d_dgrad"], [32], ["bf16"], ["res2a_3x3"])
    assert len(cases) == 1 and cases[0].problem.name == "res2_3x3"          # found by alias
    with pytest.raises(ValueError, match="not found"):
        expand_cases([seed], ["conv2d_fprop"], [1], ["fp32"], ["nope"])
    with pytest.raises(ValueError, match="per-shape"):
        expand_cases([seed], ["train_step"], [1], ["fp32"])
