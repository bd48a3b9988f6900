"""Constants that Python and C++ both use are defined once, in the C++ header the kernels compile, and the
Python copies the plans pass to the kernels are compared with that header here: activation codes, the
CUDA-core and tensor-core tiles, the problem structs' fields, the optimizer's step scalars and table words.
The C++ is parsed from the source text, so a change on either side fails here first."""
import re
from pathlib import Path

import pytest

from fastconv.backends import kernel_table
from fastconv.backends.plans import common, gemm, optim, tensor_op

CSRC = Path(__file__).resolve().parents[1] / "csrc"


def header(path):
    return (CSRC / path).read_text()


def enum_values(text, name):
    """{enumerator: value} of `enum name : int { kA = 0, ... };`."""
    m = re.search(r"enum\s+%s\s*:\s*int\s*\{([^}]*)\}" % name, text)
    assert m, f"enum {name} not found"
    return {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(-?\d+)", m.group(1))}


def struct_fields(text, name):
    """The data members of `struct name { ... };` in declaration order (functions and comments left out)."""
    m = re.search(r"struct\s+%s\s*\{(.*?)\n\};" % name, text, re.S)
    assert m, f"struct {name} not found"
    body = re.sub(r"\{[^{}]*\}", "", re.sub(r"//[^\n]*", "", m.group(1)))   # comments, inline function bodies
    fields = []
    for decl in body.split(";"):
        decl = decl.strip()
        if not decl or "(" in decl or decl.startswith(("static", "using")):
            continue
        declarators = decl.split(",")
        fields.append(re.findall(r"\w+", declarators[0])[-1])
        fields += [d.strip() for d in declarators[1:]]
    return fields


def aliases(text, template):
    """{alias: [template arguments]} of `using Alias = Template<a, b, ...>;`."""
    return {alias: [a.strip() for a in args.split(",")]
            for alias, args in re.findall(r"using\s+(\w+)\s*=\s*%s<([^>]*)>;" % template, text)}


def snake(camel):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def test_parsers_read_a_planted_header():
    text = ("enum Kind : int { kA = 0, kBeeSea = 3 };\nstruct P {\n  int a, b;   // two\n  double c;\n"
            "  FC_HOST_DEVICE int f() const { return a; }\n};\nusing T1 = Tile<1, 2>;\n")
    assert enum_values(text, "Kind") == {"kA": 0, "kBeeSea": 3}
    assert struct_fields(text, "P") == ["a", "b", "c"]
    assert aliases(text, "Tile") == {"T1": ["1", "2"]}
    with pytest.raises(AssertionError, match="enum Missing"):
        enum_values(text, "Missing")


def test_activation_codes():
    cpp = {snake(k[len("kAct"):]): v for k, v in enum_values(header("epilogue/activation.h"), "ActivationKind").items()}
    assert {k: common.ACTIVATIONS[k] for k in cpp} == cpp
    # the other Python spellings are aliases of identity
    assert {k for k, v in common.ACTIVATIONS.items() if k not in cpp} == {None, "linear"}
    assert common.ACTIVATIONS[None] == common.ACTIVATIONS["linear"] == cpp["identity"]


def test_cuda_core_tiles():
    """name -> (BM, BN, BK, threads), threads = (BM / TM) * (BN / TN) as GemmTile computes it."""
    cpp = {}
    for name, args in aliases(header("gemm/gemm_mainloop_simt.h"), "GemmTile").items():
        bm, bn, bk, tm, tn = map(int, args)
        cpp[name] = (bm, bn, bk, (bm // tm) * (bn // tn))
    assert common.TILES == cpp
    assert set(kernel_table.TILES) == set(cpp)


def test_tensor_core_tiles():
    """suffix -> (BM, BN, threads), threads = 32 * (BM / WM) * (BN / WN) as TensorOpTraits computes it."""
    cpp = {}
    for name, args in aliases(header("gemm/gemm_tensor_op_sm80.h"), "TensorOpTraits").items():
        _, bm, bn, _, wm, wn, _ = args
        bm, bn, wm, wn = map(int, (bm, bn, wm, wn))
        cpp.setdefault(re.sub(r"^TensorOp(Tf32|F16|Bf16)", "", name), set()).add((bm, bn, 32 * (bm // wm) * (bn // wn)))
    assert {k: {v} for k, v in tensor_op.TENSOR_OP_TILES.items()} == cpp


def test_problem_struct_fields():
    text = header("common/problem.h")
    assert list(common.CONV2D_PROBLEM_FIELDS) == struct_fields(text, "Conv2dProblem")
    assert list(common.POOL2D_PROBLEM_FIELDS) == struct_fields(text, "Pool2dProblem")


def test_optimizer_step_scalars_and_table_words():
    text = header("ops/optimizer.h")
    assert list(optim.STEP_SCALARS) == struct_fields(text, "StepScalars")
    # every MultiTensorEntry member (pointers and int64_t) is one 8-byte word
    assert common.MULTI_TENSOR_WORDS == len(struct_fields(text, "MultiTensorEntry"))


def test_wgmma_tiles_of_the_plan_are_the_tables():
    fam = kernel_table.FAMILIES["gemm_wgmma"]
    assert {c[0] for c in fam.configs} == set(gemm.WGMMA_BNS)
    assert {c[1] for c in fam.configs} == {gemm.WGMMA_STAGES}


def test_wgrad_wgmma_tile_of_the_plan_is_the_headers():
    """plans/conv2d_wgrad_sm90.py's mirror of fc::WgradWgmmaTile (channels, filters, pixels per k-tile, box, threads,
    shared bytes) and the kernel table's stages."""
    from fastconv.backends.plans import conv2d_wgrad_sm90 as w
    text = header("conv/conv2d_wgrad_wgmma_sm90.h")
    m = re.search(r"struct WgradWgmmaTile \{(.*?)\n\};", text, re.S)
    assert m, "struct WgradWgmmaTile not found"
    ints = {k: int(v) for k, v in re.findall(r"\b(BM|BN|BK|kBox|kThreads) = (\d+)", m.group(1))}
    assert ints == {"BM": w.WGRAD_SM90_BM, "BN": w.WGRAD_SM90_BN, "BK": w.WGRAD_SM90_PIXELS, "kBox": w.WGRAD_SM90_BOX,
                    "kThreads": w.WGRAD_SM90_THREADS}
    assert "kSharedBytes = STAGES * kStageBytes + 1024" in m.group(1) and "kStageBytes = kXBytes + kDyBytes" in m.group(1)
    assert w.WGRAD_SM90_SHARED == w.WGRAD_SM90_STAGES * (ints["BM"] + ints["BN"]) * ints["BK"] * 2 + 1024
    assert {c[0] for c in kernel_table.FAMILIES["conv2d_wgrad_wgmma_sm90"].configs} == {w.WGRAD_SM90_STAGES}
