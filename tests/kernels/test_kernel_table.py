"""The kernel table (fastconv/backends/kernel_table.py): the name builder, the table against the C++ it names,
and the lists generated from it (scripts/gen_kernel_list.py) following one table entry."""
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from fastconv.backends import kernel_table
from fastconv.backends.kernel_table import FAMILIES, kernel_name

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import gen_kernel_list  # noqa: E402


@pytest.mark.parametrize("family, params, want", [
    ("conv2d_fprop_implicit_gemm", dict(tile="TileSmall", vec=4, index="int", t="float"),
     "fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>"),
    ("gemm_bias_act", dict(tile="TileMedium", vec=1, index="int64_t", t="float", trans_a=True, trans_b=False),
     "fc::gemm_bias_act<fc::TileMedium, 1, int64_t, float, true, false>"),
    ("max_pool2d_bprop", dict(t="double", arg="uint16_t"), "fc::max_pool2d_bprop<double, uint16_t>"),
    ("conv2d_wgrad_tensor_op", dict(traits="TensorOpBf16Tile64", vec=8), "fc::conv2d_wgrad_tensor_op<fc::TensorOpBf16Tile64, 8>"),
    ("gemm_wgmma", dict(bn=256, stages=4, t="__half", out="float"), "fc::gemm_wgmma<fc::WgmmaTile<256, 4>, __half, float>"),
])
def test_kernel_name_spells_the_cpp_template_id(family, params, want):
    assert kernel_name(family, **params) == want


@pytest.mark.parametrize("family, params, match", [
    ("conv2d_fprop_winograd", {}, r"kernel family 'conv2d_fprop_winograd' is not in the kernel table"),
    ("conv2d_fprop_implicit_gemm", dict(tile="TileSmall", vec=4, t="float"), r"takes the parameters tile, vec, index, t"),
    ("conv2d_fprop_implicit_gemm", dict(tile="TileLarge", vec=4, index="int64_t", t="float"),
     r"conv2d_fprop_implicit_gemm is not instantiated for tile='TileLarge', vec=4, index='int64_t'"),
    ("conv2d_bias_relu_maxpool3x3s2_fprop", dict(tile="TileLarge", vec=1, index="int", t="float"), r"not instantiated"),
    ("gemm_bias_act", dict(tile="TileSmall", vec=1, index="int", t="float", trans_a="true", trans_b=False),
     r"trans_a='true'"),
])
def test_kernel_name_refuses_what_the_table_does_not_list(family, params, match):
    with pytest.raises(ValueError, match=match):
        kernel_name(family, **params)


def test_only_an_unlisted_configuration_is_not_instantiated_and_tensor_op_name_turns_it_into_none():
    from fastconv.backends.plans.tensor_op import tensor_op_name
    with pytest.raises(kernel_table.NotInstantiated):
        kernel_name("gemm_tensor_op", traits="TensorOpTf32Tile128", vec=4, out="float")
    assert tensor_op_name("gemm_tensor_op", "Tf32", "Tile128", 4, "float") is None
    assert tensor_op_name("gemm_tensor_op", "Bf16", "Tile128", 8, "__nv_bfloat16") == \
        "fc::gemm_tensor_op<fc::TensorOpBf16Tile128, 8, __nv_bfloat16>"
    with pytest.raises(ValueError) as err:   # a misspelt family is a bug, not an unbuilt configuration
        tensor_op_name("gemm_tensor_opp", "Tf32", "Tile64", 4, "float")
    assert not isinstance(err.value, kernel_table.NotInstantiated)


def test_kernel_name_spells_equal_values_as_the_table_does_whatever_was_asked_first():
    """The cache keys on types, and the name is rendered from the table's own values: 1 and True, or
    numpy and Python ints, give one spelling."""
    want = "fc::gemm_bias_act<fc::TileSmall, 4, int, float, true, false>"
    assert kernel_name("gemm_bias_act", tile="TileSmall", vec=4, index="int", t="float", trans_a=1, trans_b=0) == want
    assert kernel_name("gemm_bias_act", tile="TileSmall", vec=np.int64(4), index="int", t="float",
                       trans_a=True, trans_b=False) == want


def test_the_plans_build_no_launch_name_of_their_own():
    """Every fc:: template-id a plan launches comes from kernel_name(), which refuses what the table lacks."""
    literal = re.compile(r"""\bf?["']fc::\w+<""")
    found = [f"{p.name}:{i}: {line.strip()}" for p in sorted((ROOT / "fastconv/backends/plans").glob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert not found, "\n".join(found)


def test_names_are_unique_and_views_split_the_table():
    every = kernel_table.kernel_names()
    assert len(every) == len(set(every))
    by_arch = [kernel_table.kernel_names((a,)) for a in kernel_table.ARCHS]
    assert sorted(every) == sorted(n for names in by_arch for n in names) and all(by_arch)
    with pytest.raises(ValueError, match="archs must be among"):
        kernel_table.kernel_names(("sm100",))


def _template_params(text, name):
    """The template parameter list of `template <...> __global__ ... name(` in a header, or None."""
    m = re.search(r"template\s*<([^>]*)>\s*__global__[^;{]*?\b%s\s*\(" % re.escape(name), text, re.S)
    return None if m is None else [p.strip() for p in m.group(1).split(",")]


def _top_level_args(template_id):
    """'fc::k<fc::T<1, 2>, float>' -> ['fc::T<1, 2>', 'float']."""
    inner = template_id[template_id.index("<") + 1:-1]
    args, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    return args + [inner[start:].strip()]


def test_top_level_args_split_nested_templates():
    assert _top_level_args("fc::k<fc::T<1, 2>, float>") == ["fc::T<1, 2>", "float"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_is_a_kernel_template_of_its_header_with_its_parameters(family):
    fam = FAMILIES[family]
    params = _template_params((ROOT / "csrc" / fam.header).read_text(), family)
    assert params is not None, f"no __global__ template {family} in csrc/{fam.header}"
    assert all(len(c) == len(fam.params) for c in fam.configs)
    for config in fam.configs:
        name = fam.render(config)
        assert name.startswith(f"fc::{family}<") and len(_top_level_args(name)) == len(params), \
            f"{name} vs {family}<{', '.join(params)}>"


def test_one_table_entry_reaches_every_generated_list(monkeypatch):
    """A configuration added to the table appears in the native list (with its alignment), in the emulator's
    list, and makes --check fail until the lists are rewritten."""
    assert gen_kernel_list.stale_files() == []
    fam = FAMILIES["conv2d_fprop_implicit_gemm"]
    extra = ("TileLarge", 4, "int64_t", "float")
    monkeypatch.setitem(FAMILIES, fam.name, dataclasses.replace(fam, configs=fam.configs + (extra,),
                                                                emulate=lambda c: True))
    name = "fc::conv2d_fprop_implicit_gemm<fc::TileLarge, 4, int64_t, float>"
    assert kernel_name(fam.name, tile="TileLarge", vec=4, index="int64_t", t="float") == name
    files = gen_kernel_list.generated_files()
    assert re.search(r"^FC_KERNEL_SHARD[0-3]\(16, %s\)$" % re.escape(name), files[gen_kernel_list.LAUNCH / "kernel_list.inc"], re.M)
    assert f"FC_EMU_KERNEL_ID({name})\n" in files[gen_kernel_list.LAUNCH / "emu_kernel_list.inc"]
    assert gen_kernel_list.LAUNCH / "kernel_list.inc" in gen_kernel_list.stale_files()


def test_sass_report_sources_instantiate_the_table():
    src = gen_kernel_list.instantiation_source(("sm80",))
    assert src.count("reinterpret_cast<const void*>(&fc::") == len(kernel_table.kernel_names(("sm80",)))
    assert '#include "gemm/gemm_tensor_op_sm80.h"' in src


def test_the_emulator_registers_exactly_the_tables_emulated_kernels():
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built")
    registered = {n for n in emulator.kernels() if n.startswith("fc::")}
    assert registered == {i.name for i in kernel_table.instances() if i.emulated}


def test_wgmma_tile_default_is_spelled_as_a_demangler_spells_it_and_back():
    """fc::WgmmaTile<BN, STAGES, BM = 128>: the table leaves the default BM out, c++filt writes it; the SASS report
    and the ptxas resources match names through these two."""
    from fastconv.backends.kernel_table import demangled_spelling, table_spelling
    assert (demangled_spelling("fc::gemm_wgmma<fc::WgmmaTile<256, 4>, __half, float>")
            == "fc::gemm_wgmma<fc::WgmmaTile<256, 4, 128>, __half, float>")
    names = kernel_table.kernel_names(archs=("sm90a",))
    assert any(", 4, 64>" in n for n in names)
    assert [table_spelling(demangled_spelling(n)) for n in names] == names
    assert all(demangled_spelling(n) == n for n in names if ", 4, 64>" in n)
