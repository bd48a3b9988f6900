"""The sm_80+ tensor-core kernels (csrc/conv/*_tensor_op_sm80.h, csrc/gemm/gemm_tensor_op_sm80.h: mma.sync, ldmatrix, cp.async) run by the CPU SIMT
emulator through their launch plans (fastconv/backends/plans/gemm.py gemm_tensor_op,
conv2d_fprop_tensor_op), against NumPy.

- small integers in [-3, 3] (exact in tf32, fp16 and bf16; every sum exact in fp32): compared for
  equality, on partial tiles in M, N and K, for each operand type and output type, in forward and
  reverse thread order, and with poison_async=True (cp.async destinations read as NaN until the
  wait_group that completes them: catches a fragment read before its wait + barrier);
- random floats: relative error ||out - ref|| / ||ref|| against a float64 product of the operands
  rounded to the operand type (tf32 with cvt.rna, like the kernel);
- conv fprop against fastconv.backends.reference.conv2d_fprop, and the CUDA-core fallback of the plan.
Build checks (nvcc, NVRTC, SASS) are in test_tensor_core_build.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fastconv.backends import reference as ref
from fastconv.backends.plans import KernelOps
from fastconv.backends.plans.tensor_op import bf16_bits_to_float32, float32_to_bf16_bits, tensor_op_kernel_names
from fastconv.shapes import resolve_padding
from conftest import assert_same
from problems import CONV, conv_args

ROOT = Path(__file__).resolve().parents[2]
OPERAND = {"tf32": np.float32, "f16": np.float16, "bf16": np.uint16}   # bf16 travels as raw uint16 bits
# Relative Frobenius error vs float64 on the rounded operands: K <= 72 products of O(1) values summed
# in fp32 are far inside these; they leave room for the output rounding of 16-bit outputs
# (2^-11 for fp16, 2^-8 for bf16 per element).
TOLERANCE = {"tf32": 1e-3, "f16": 2e-3, "bf16": 1e-2}


def tc_ops(order="random", poison=False):
    """KernelOps on the emulator with poison_async switchable (emulated.ops() does not expose it);
    seeded random order unless a test chooses one, as emulated_ops()."""
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built (python setup.py build_ext --inplace)")
    if "fc::gemm_tensor_op<fc::TensorOpTf32Tile64, 4, float>" not in emulator.kernels():
        pytest.skip("fastconv._emu predates the tensor-core kernels: rebuild it")
    from fastconv.backends.emulated import _python_value
    launched = []

    def launch(kernel, grid, block, args, shared_bytes=0, keep_alive=None):
        launched.append(kernel)
        emulator.launch(kernel, tuple(grid), tuple(block), [_python_value(a) for a in args], shared_bytes=shared_bytes,
                        order=order, seed=1, poison_async=poison)

    ops = KernelOps(np, launch, lambda a: int(a.ctypes.data))
    ops.launched = launched
    return ops


def tf32_round(f):
    """cvt.rna.tf32.f32 in NumPy: nearest, ties away from zero, on the top 19 bits."""
    u = np.ascontiguousarray(f, np.float32).view(np.uint32)
    return ((u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def operand(values, prec):
    """float values -> the operand array the kernel takes (rounded to the operand type)."""
    if prec == "bf16":
        return float32_to_bf16_bits(np, values.astype(np.float32))
    return values.astype(OPERAND[prec])


def operand_value(a, prec):
    """The float64 value the tensor core multiplies."""
    if prec == "bf16":
        return bf16_bits_to_float32(np, a).astype(np.float64)
    if prec == "tf32":
        return tf32_round(a).astype(np.float64)
    return a.astype(np.float64)


def out_value(c, out):
    return bf16_bits_to_float32(np, c).astype(np.float64) if out == "operand" and c.dtype == np.uint16 \
        else c.astype(np.float64)


def rel_err(got, want):
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def test_emulator_list_registers_every_tensor_core_kernel():
    """The generated emulator list (csrc/launch/emu_kernel_list.inc) holds every tensor-core kernel the plans
    can choose, in the table's order."""
    text = (ROOT / "csrc" / "launch" / "emu_kernel_list.inc").read_text()
    listed = re.findall(r"^FC_EMU_KERNEL_ID\((fc::\w+_tensor_op<.*)\)$", text, re.M)
    assert listed and listed == tensor_op_kernel_names()


def test_native_registry_holds_every_tensor_core_kernel():
    """fastconv._C registers the tensor-core kernels (csrc/launch/kernel_list.inc, generated from
    all_kernel_names()) in shards of their own, each with the alignment of one 16- or 4-byte cp.async."""
    from fastconv.backends.jit import all_kernel_names
    text = (ROOT / "csrc" / "launch" / "kernel_list.inc").read_text()
    listed = re.findall(r"^FC_KERNEL_SHARD(\d+)\((\d+), (.*)\)$", text, re.M)
    assert sorted(n for _, _, n in listed) == sorted(all_kernel_names())
    tensor_op = [(int(shard), int(align), n) for shard, align, n in listed if n in set(tensor_op_kernel_names())]
    assert [n for _, _, n in tensor_op] == tensor_op_kernel_names()
    assert {shard for shard, _, _ in tensor_op} == {4, 5}
    assert all(int(shard) < 4 for shard, _, n in listed if n not in set(tensor_op_kernel_names()))
    for _, align, n in tensor_op:
        vec = int(re.search(r"Tile\d+, (\d+)", n).group(1))
        assert align == vec * (4 if "Tf32" in n else 2), n
    for shard in (4, 5):
        src = (ROOT / "csrc" / "launch" / f"kernels_shard{shard}.cu").read_text()
        assert f"#define FC_KERNEL_SHARD{shard}(align, ...) FC_REGISTER(align, __VA_ARGS__)" in src


# (M, N, K) one off tile multiples (64 x 64 CTA, BK 16 for tf32 / 32 for 16-bit) in every dimension.
# "vec": K and N multiples of 16 bytes (16-byte cp.async); "narrow": not (4-byte cp.async).
GEMM_SHAPES = {"tf32": {"vec": (65, 68, 36), "narrow": (63, 65, 17)},
               "f16": {"vec": (65, 72, 40), "narrow": (63, 66, 34)},
               "bf16": {"vec": (63, 72, 40), "narrow": (65, 62, 30)}}


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("path", ["vec", "narrow"])
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_gemm_exact_small_integers(prec, path, order, rng):
    m, n, k = GEMM_SHAPES[prec][path]
    a = operand(rng.integers(-3, 4, (m, k)), prec)
    b = operand(rng.integers(-3, 4, (k, n)), prec)
    ops = tc_ops(order)
    got = ops.gemm_tensor_op(a, b)
    want = (operand_value(a, prec) @ operand_value(b, prec)).astype(np.float32)
    assert_same(got, want, exact=True, what=f"gemm_tensor_op {prec} {path} {order}")
    vec = {"vec": 16, "narrow": 4}[path] // np.dtype(OPERAND[prec]).itemsize
    assert ops.launched == [n for n in tensor_op_kernel_names() if n.startswith("fc::gemm_tensor_op")
                            and f"{prec.capitalize()}Tile64, {vec}, float>" in n]



# Edge shapes: one row and one k-step; exact tile multiples; K = 200 (7 to 13 k-slices: the stage ring
# wraps several times, with a partial last slice).
EDGE_SHAPES = [(1, 8, 8), (64, 64, 64), (17, 24, 200)]


@pytest.mark.parametrize("order", ["forward", "random"])
@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=["x".join(map(str, s)) for s in EDGE_SHAPES])
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_gemm_edge_shapes(prec, shape, order, rng):
    m, n, k = shape
    a = operand(rng.integers(-3, 4, (m, k)), prec)
    b = operand(rng.integers(-3, 4, (k, n)), prec)
    got = tc_ops(order, poison=True).gemm_tensor_op(a, b)
    want = (operand_value(a, prec) @ operand_value(b, prec)).astype(np.float32)
    assert_same(got, want, exact=True, what=f"gemm_tensor_op {prec} {shape} {order}")

@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_gemm_poisoned_async_copies(prec, rng):
    """NaN in every cp.async destination until its wait: any fragment read too early shows up as NaN."""
    for path in ("vec", "narrow"):
        m, n, k = GEMM_SHAPES[prec][path]
        a = operand(rng.integers(-3, 4, (m, k)), prec)
        b = operand(rng.integers(-3, 4, (k, n)), prec)
        got = tc_ops("reverse", poison=True).gemm_tensor_op(a, b)
        want = (operand_value(a, prec) @ operand_value(b, prec)).astype(np.float32)
        assert_same(got, want, exact=True, what=f"gemm_tensor_op {prec} {path} poison_async")


@pytest.mark.parametrize("prec", ["f16", "bf16"])
def test_gemm_operand_type_output_with_bias_relu(prec, rng):
    """Output in the operand type through the shared bias + activation epilogue (ints: exact)."""
    m, n, k = GEMM_SHAPES[prec]["vec"]
    a = operand(rng.integers(-3, 4, (m, k)), prec)
    b = operand(rng.integers(-3, 4, (k, n)), prec)
    bias = rng.integers(-3, 4, (n,)).astype(np.float32)
    got = tc_ops("reverse", poison=True).gemm_tensor_op(a, b, bias=bias, activation="relu", out_dtype=OPERAND[prec])
    assert got.dtype == OPERAND[prec]
    want = np.maximum(operand_value(a, prec) @ operand_value(b, prec) + bias, 0)   # |values| <= 9 * 40 + 3
    want = operand_value(operand(want, prec), prec)   # bf16 holds integers exactly only up to 256: round
    assert_same(out_value(got, "operand"), want, exact=True, what=f"gemm_tensor_op {prec} bias+relu")


@pytest.mark.parametrize("prec", ["f16", "bf16"])
def test_gemm_large_tile(prec, rng):
    """The 128 x 128 CTA (eight 64 x 32 warps, two stages), one CTA with partial M, N and K."""
    m, n, k = 80, 72, 72
    a = operand(rng.integers(-3, 4, (m, k)), prec)
    b = operand(rng.integers(-3, 4, (k, n)), prec)
    ops = tc_ops("reverse", poison=True)
    ops.force_tensor_op_tile = "Tile128"
    out = np.float32 if prec == "f16" else np.uint16
    got = ops.gemm_tensor_op(a, b, out_dtype=out)
    assert "Tile128" in ops.launched[0]
    want = operand_value(a, prec) @ operand_value(b, prec)
    got64 = out_value(got, "operand")
    if prec == "bf16":   # |sums| up to 648 need more than bf16's 8 bits: compare with the rounded exact sum
        want = operand_value(operand(want, prec), prec)
    assert_same(got64, want, exact=True, what=f"gemm_tensor_op {prec} Tile128")


@pytest.mark.parametrize("prec, out", [("tf32", "float32"), ("f16", "float32"), ("f16", "operand"),
                                       ("bf16", "float32"), ("bf16", "operand")])
def test_gemm_random_floats(prec, out, rng):
    m, n, k = GEMM_SHAPES[prec]["vec"]
    a = operand(rng.standard_normal((m, k)), prec)
    b = operand(rng.standard_normal((k, n)), prec)
    got = tc_ops("forward" if out == "float32" else "reverse").gemm_tensor_op(
        a, b, out_dtype=OPERAND[prec] if out == "operand" else None)
    want = operand_value(a, prec) @ operand_value(b, prec)
    err = rel_err(out_value(got, out), want)
    assert err < TOLERANCE[prec], f"gemm_tensor_op {prec} -> {out}: relative error {err:.3g}"
    if prec == "tf32":   # and the rounding really is tf32's: unrounded fp32 operands differ by ~1e-4
        exact = a.astype(np.float64) @ b.astype(np.float64)
        assert 1e-5 < rel_err(got.astype(np.float64), exact) < TOLERANCE[prec]


def test_gemm_rejects_odd_16bit_extents(rng):
    a = np.ones((8, 33), np.float16)
    b = np.ones((33, 8), np.float16)
    with pytest.raises(ValueError, match="even K and N"):
        tc_ops().gemm_tensor_op(a, b)


# ---- conv2d fprop ------------------------------------------------------------------------------
# Curated problems with C % 8 == 0 and K % 8 == 0 (k40_s2: 3x3 stride 2 with padding, M = 50 and
# K = 40 partial tiles), plus local shapes: a 1x1, a 3x3 'same' with M = 81 (two CTAs, the second
# partial) and R*S*C = 72 (two and a quarter k-slices of 32).
TC_CONV = {
    "k40_s2": conv_args("k40_s2"),
    "1x1_c16_k24": ((2, 5, 5, 16), (1, 1, 16, 24), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    "3x3_same_c8_k16": ((1, 9, 9, 8), (3, 3, 8, 16), (1, 1),
                        tuple(resolve_padding("same", (9, 9), (3, 3), (1, 1), (1, 1))), (1, 1), 1),
    "3x3s2_c16_k8": ((2, 8, 7, 16), (3, 3, 16, 8), (2, 2), ((1, 1), (0, 1)), (1, 1), 1),
}


def _conv_inputs(rng, problem, prec, ints):
    x_shape, w_shape = TC_CONV[problem][:2] if problem in TC_CONV else CONV[problem][:2]
    draw = (lambda s: rng.integers(-3, 4, s)) if ints else rng.standard_normal
    return operand(draw(x_shape), prec), operand(draw(w_shape), prec)


def _conv_ref(x, w, prec, args):
    _, _, stride, pads, dil, groups = args
    return ref.conv2d_fprop(operand_value(x, prec), operand_value(w, prec), stride, pads, dil, groups)


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("problem", list(TC_CONV))
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_fprop_exact_small_integers(prec, problem, order, rng):
    args = TC_CONV[problem]
    x, w = _conv_inputs(rng, problem, prec, ints=True)
    ops = tc_ops(order, poison=order == "reverse")
    got = ops.conv2d_fprop_tensor_op(x, w, *args[2:])
    assert ops.launched and "conv2d_fprop_tensor_op" in ops.launched[0], ops.launched
    assert_same(got, _conv_ref(x, w, prec, args).astype(np.float32), exact=True,
                what=f"conv2d_fprop_tensor_op {prec} {problem} {order}")


@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_fprop_random_floats_bias_act(prec, rng):
    args = TC_CONV["3x3_same_c8_k16"]
    x, w = _conv_inputs(rng, "3x3_same_c8_k16", prec, ints=False)
    bias = rng.standard_normal(16).astype(np.float32)
    for out in ("float32", "operand"):
        ops = tc_ops("forward" if out == "float32" else "reverse")   # each kernel in an order other than forward
        got = ops.conv2d_fprop_tensor_op(x, w, *args[2:], bias=bias, activation="leaky_relu", alpha=0.25,
                                         out_dtype=OPERAND[prec] if out == "operand" else None)
        assert "conv2d_fprop_tensor_op" in ops.launched[0]
        y = _conv_ref(x, w, prec, args) + bias
        want = np.where(y > 0, y, 0.25 * y)
        err = rel_err(out_value(got, out), want)
        assert err < TOLERANCE[prec], f"conv2d_fprop_tensor_op {prec} -> {out}: relative error {err:.3g}"


@pytest.mark.parametrize("problem", ["1x1_vec4", "groups2_dil2_vec4", "7x7s2_same_c3"])
@pytest.mark.parametrize("prec", ["f16", "bf16"])
def test_conv2d_fprop_falls_back_to_cuda_cores(prec, problem, rng):
    """K = 12 (not 8 halves), groups = 2, C = 3: the plan takes the CUDA-core fp32 kernel."""
    args = conv_args(problem)
    x, w = _conv_inputs(rng, problem, prec, ints=True)
    ops = tc_ops()
    got = ops.conv2d_fprop_tensor_op(x, w, *args[2:])
    assert ops.launched and all("tensor_op" not in n for n in ops.launched), ops.launched
    assert_same(got, _conv_ref(x, w, prec, args).astype(np.float32), exact=True,
                what=f"conv2d_fprop_tensor_op fallback {prec} {problem}")


# ---- shared-memory bank arithmetic of the padded layouts (the emulator has no banks) --------------
def _traits():
    text = (ROOT / "csrc" / "gemm" / "gemm_tensor_op_sm80.h").read_text()
    out = {}
    for alias, args in re.findall(r"^using (\w+) = TensorOpTraits<(.*)>;", text, re.M):
        elem, *dims = [v.strip() for v in args.split(",")]
        bm, bn, bk, wm, wn, _ = map(int, dims)
        size = 4 if elem == "float" else 2
        pad_a, pad_b = (4 if size == 4 else 8), 8   # mirrors TensorOpTraits::kPadA / kPadB
        out[alias] = (size, bm, bn, bk, wm, wn, bk + pad_a, bn + pad_b)
    return out


def _conflict_free(word_addresses_per_request):
    """Each request (one ldmatrix matrix = 8 rows x 4 words, or one 32-lane 4-byte load) hits 32 distinct banks."""
    return all(len({w % 32 for w in req}) == len(req) == 32 for req in word_addresses_per_request)


@pytest.mark.parametrize("alias", list(_traits()))
def test_padded_shared_layout_is_conflict_free(alias):
    size, bm, bn, bk, wm, wn, lda, ldb = _traits()[alias]
    requests = []
    for wm0 in range(0, bm, wm):
        for wn0 in range(0, bn, wn):
            for kk in range(0, bk, 8 if size == 4 else 16):
                if size == 4:   # tf32: A[g + 8(r%2)][t + 4(r/2)], B[t + 4r][g], 32 lanes per load
                    for i in range(wm // 16):
                        for r in range(4):
                            requests.append([(wm0 + i * 16 + g + 8 * (r % 2)) * lda + kk + t + 4 * (r // 2)
                                             for g in range(8) for t in range(4)])
                    for j in range(wn // 8):
                        for r in range(2):
                            requests.append([(kk + t + 4 * r) * ldb + wn0 + j * 8 + g for g in range(8) for t in range(4)])
                else:           # ldmatrix: matrix j's 8 rows of 16 bytes are one request
                    for i in range(wm // 16):
                        for j in range(4):
                            rows = [(wm0 + i * 16 + (j % 2) * 8 + r) * lda + kk + (j // 2) * 8 for r in range(8)]
                            requests.append([e * size // 4 + w for e in rows for w in range(4)])
                    for jn in range(0, wn // 8, 2):
                        for j in range(4):
                            rows = [(kk + (j % 2) * 8 + r) * ldb + wn0 + (jn + j // 2) * 8 for r in range(8)]
                            requests.append([e * size // 4 + w for e in rows for w in range(4)])
    assert _conflict_free(requests)


# ---- fused residual epilogue (y = act(acc + bias + residual), cast to the output type) -------------
@pytest.mark.parametrize("prec, out", [("tf32", "float32"), ("f16", "operand"), ("bf16", "operand"),
                                       ("bf16", "float32")])
def test_gemm_residual_bias_relu_exact(prec, out, rng):
    m, n, k = GEMM_SHAPES[prec]["vec"]
    a = operand(rng.integers(-3, 4, (m, k)), prec)
    b = operand(rng.integers(-3, 4, (k, n)), prec)
    bias = rng.integers(-3, 4, (n,)).astype(np.float32)
    residual = rng.integers(-20, 21, (m, n)).astype(np.float32)   # float32 in, read in the output dtype
    out_dt = OPERAND[prec] if out == "operand" else None
    got = tc_ops("reverse", poison=True).gemm_tensor_op(a, b, bias=bias, activation="relu", out_dtype=out_dt,
                                                        residual=residual)
    want = np.maximum(operand_value(a, prec) @ operand_value(b, prec) + bias + residual, 0)
    if out == "operand":
        want = operand_value(operand(want, prec), prec)
    assert_same(out_value(got, out), want, exact=True, what=f"gemm_tensor_op {prec} residual -> {out}")


@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_fprop_residual_leaky_relu_random(prec, rng):
    args = TC_CONV["3x3s2_c16_k8"]
    x, w = _conv_inputs(rng, "3x3s2_c16_k8", prec, ints=False)
    y_plain = _conv_ref(x, w, prec, args)
    bias = rng.standard_normal(y_plain.shape[-1]).astype(np.float32)
    residual = operand(rng.standard_normal(y_plain.shape), prec)   # the operand dtype, as a skip tensor would be
    for out in ("float32", "operand"):
        ops = tc_ops("forward" if out == "float32" else "reverse")   # each kernel in an order other than forward
        got = ops.conv2d_fprop_tensor_op(x, w, *args[2:], bias=bias, activation="leaky_relu", alpha=0.25,
                                         out_dtype=OPERAND[prec] if out == "operand" else None, residual=residual)
        assert "conv2d_fprop_tensor_op" in ops.launched[0]
        v = y_plain + bias + operand_value(residual, prec)
        want = np.where(v > 0, v, 0.25 * v)
        err = rel_err(out_value(got, out), want)
        assert err < TOLERANCE[prec], f"conv2d_fprop_tensor_op {prec} residual -> {out}: relative error {err:.3g}"


@pytest.mark.parametrize("prec", ["f16", "bf16"])
def test_conv2d_fprop_residual_on_the_fallback_path(prec, rng):
    """groups = 2: the CUDA-core kernel, then the residual and the activation in the fused order."""
    args = conv_args("groups2_dil2_vec4")
    x, w = _conv_inputs(rng, "groups2_dil2_vec4", prec, ints=True)
    y_plain = _conv_ref(x, w, prec, args)
    residual = rng.integers(-20, 21, y_plain.shape).astype(np.float32)
    ops = tc_ops()
    got = ops.conv2d_fprop_tensor_op(x, w, *args[2:], activation="relu", residual=residual)
    assert all("tensor_op" not in n for n in ops.launched), ops.launched
    assert_same(got, np.maximum(y_plain + residual, 0).astype(np.float32), exact=True, what=f"fallback residual {prec}")


def test_residual_with_the_wrong_shape_is_rejected(rng):
    a = np.ones((16, 16), np.float16)
    with pytest.raises(ValueError, match=r"residual has shape \(16, 8\), expected the output's \(16, 16\)"):
        tc_ops().gemm_tensor_op(a, a, residual=np.zeros((16, 8), np.float32))


# ---- conv2d dgrad and wgrad ----------------------------------------------------------------------
# C and K multiples of 8 (the 16-byte path of every operand type); partial tiles in M (N*H*W or R*S*C),
# N (C or K, one over 64) and the reduction; strides 1 and 2 (with rows no window reads), asymmetric
# padding larger than the stride, dilation.
TC_GRAD = {
    "k40_s2": conv_args("k40_s2"),
    "3x3_same_c16_k24": ((2, 9, 7, 16), (3, 3, 16, 24), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    "1x1s2_c72_k8": ((2, 7, 8, 72), (1, 1, 72, 8), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    "5x5_pad_gt_stride_s1x2": ((1, 7, 6, 8), (5, 5, 8, 16), (1, 2), ((3, 1), (2, 3)), (1, 1), 1),
    "3x3s2_dil2_c24_k8": ((2, 11, 12, 24), (3, 3, 24, 8), (2, 2), ((2, 2), (1, 2)), (2, 2), 1),
}


def _grad_inputs(rng, problem, prec, ints):
    x_shape, w_shape, stride, pads, dil, groups = TC_GRAD[problem]
    draw = (lambda s: rng.integers(-3, 4, s)) if ints else rng.standard_normal
    y_shape = ref.conv2d_fprop(np.zeros(x_shape), np.zeros(w_shape), stride, pads, dil, groups).shape
    return operand(draw(x_shape), prec), operand(draw(w_shape), prec), operand(draw(y_shape), prec)


def _dgrad_ref(dy, w, prec, args):
    x_shape, _, stride, pads, dil, groups = args
    return ref.conv2d_dgrad(operand_value(dy, prec), operand_value(w, prec), x_shape, stride, pads, dil, groups)


def _wgrad_ref(x, dy, prec, args):
    _, w_shape, stride, pads, dil, groups = args
    return ref.conv2d_wgrad(operand_value(x, prec), operand_value(dy, prec), w_shape, stride, pads, dil, groups)


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("problem", list(TC_GRAD))
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_dgrad_exact_small_integers(prec, problem, order, rng):
    args = TC_GRAD[problem]
    _, w, dy = _grad_inputs(rng, problem, prec, ints=True)
    ops = tc_ops(order, poison=order == "reverse")
    got = ops.conv2d_dgrad_tensor_op(dy, w, *args[:1], *args[2:])
    kernel = "conv2d_dgrad_strided_tensor_op" if tuple(args[2]) != (1, 1) else "conv2d_dgrad_tensor_op"
    assert ops.launched == [f"fc::{kernel}<fc::TensorOp{prec.capitalize()}Tile64, "
                            f"{16 // np.dtype(OPERAND[prec]).itemsize}, float>"], ops.launched
    assert got.dtype == np.float32 and got.shape == tuple(args[0])
    assert_same(got, _dgrad_ref(dy, w, prec, args).astype(np.float32), exact=True,
                what=f"conv2d_dgrad_tensor_op {prec} {problem} {order}")


@pytest.mark.parametrize("prec", ["f16", "bf16"])
def test_conv2d_dgrad_operand_type_output_exact(prec, rng):
    args = TC_GRAD["3x3s2_dil2_c24_k8"]
    _, w, dy = _grad_inputs(rng, "3x3s2_dil2_c24_k8", prec, ints=True)
    ops = tc_ops("reverse", poison=True)
    got = ops.conv2d_dgrad_tensor_op(dy, w, *args[:1], *args[2:], out_dtype=OPERAND[prec])
    assert got.dtype == OPERAND[prec] and "conv2d_dgrad_strided_tensor_op" in ops.launched[0]
    want = operand_value(operand(_dgrad_ref(dy, w, prec, args), prec), prec)   # the one output rounding
    assert_same(out_value(got, "operand"), want, exact=True, what=f"conv2d_dgrad_tensor_op {prec} -> operand")


@pytest.mark.parametrize("problem", ["3x3_same_c16_k24", "5x5_pad_gt_stride_s1x2"])
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_dgrad_random_floats(prec, problem, rng):
    args = TC_GRAD[problem]
    _, w, dy = _grad_inputs(rng, problem, prec, ints=False)
    want = _dgrad_ref(dy, w, prec, args)
    for out in ("float32", "operand"):
        got = tc_ops("random").conv2d_dgrad_tensor_op(dy, w, *args[:1], *args[2:],
                                                       out_dtype=OPERAND[prec] if out == "operand" else None)
        err = rel_err(out_value(got, out), want)
        assert err < TOLERANCE[prec], f"conv2d_dgrad_tensor_op {prec} {problem} -> {out}: relative error {err:.3g}"


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("problem", list(TC_GRAD))
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_wgrad_exact_small_integers(prec, problem, order, rng):
    args = TC_GRAD[problem]
    x, _, dy = _grad_inputs(rng, problem, prec, ints=True)
    ops = tc_ops(order, poison=order == "reverse")
    ops.force_splits = 3 if order == "reverse" else None   # split-k (where N*P*Q has 3 slices) and not
    got = ops.conv2d_wgrad_tensor_op(x, dy, *args[1:])
    assert ops.launched[0] == (f"fc::conv2d_wgrad_tensor_op<fc::TensorOp{prec.capitalize()}Tile64, "
                               f"{16 // np.dtype(OPERAND[prec]).itemsize}>"), ops.launched
    assert got.dtype == np.float32 and got.shape == tuple(args[1])
    assert_same(got, _wgrad_ref(x, dy, prec, args).astype(np.float32), exact=True,
                what=f"conv2d_wgrad_tensor_op {prec} {problem} {order}")


# N*P*Q = 4 * 16 * 16 = 1024: the default plan splits it (2 splits for 16-bit operands, 4 for tf32);
# forced: 5 splits of 224 or 208 with a partial last one.
SPLIT_PROBLEM = ((4, 16, 16, 8), (3, 3, 8, 16), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)


@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_wgrad_split_k_exact_and_bitwise_deterministic(prec, rng):
    x_shape, w_shape, *rest = SPLIT_PROBLEM
    x = operand(rng.integers(-3, 4, x_shape), prec)
    dy = operand(rng.integers(-3, 4, (4, 16, 16, 16)), prec)
    want = ref.conv2d_wgrad(operand_value(x, prec), operand_value(dy, prec), w_shape, *rest).astype(np.float32)
    for force in (None, 5):
        ops = tc_ops("forward")
        ops.force_splits = force
        got = ops.conv2d_wgrad_tensor_op(x, dy, w_shape, *rest)
        assert ops.launched[-1] == "fc::split_k_reduce<float>", ops.launched   # more than one split ran
        assert_same(got, want, exact=True, what=f"conv2d_wgrad_tensor_op {prec} splits={force}")
    # random floats: every thread order gives the same bits (fixed split boundaries, fixed-order reduction)
    x = operand(rng.standard_normal(x_shape), prec)
    dy = operand(rng.standard_normal((4, 16, 16, 16)), prec)
    runs = []
    for order in ("forward", "reverse", "random"):
        ops = tc_ops(order)
        ops.force_splits = 5
        runs.append(ops.conv2d_wgrad_tensor_op(x, dy, w_shape, *rest))
    assert all(np.array_equal(r.view(np.uint32), runs[0].view(np.uint32)) for r in runs[1:])
    want = ref.conv2d_wgrad(operand_value(x, prec), operand_value(dy, prec), w_shape, *rest)
    err = rel_err(runs[0].astype(np.float64), want)
    assert err < TOLERANCE[prec], f"conv2d_wgrad_tensor_op {prec} split-k: relative error {err:.3g}"


@pytest.mark.parametrize("problem", ["3x3_same_c16_k24", "3x3s2_dil2_c24_k8"])
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_wgrad_random_floats(prec, problem, rng):
    args = TC_GRAD[problem]
    x, _, dy = _grad_inputs(rng, problem, prec, ints=False)
    got = tc_ops("random").conv2d_wgrad_tensor_op(x, dy, *args[1:])
    err = rel_err(got.astype(np.float64), _wgrad_ref(x, dy, prec, args))
    assert err < TOLERANCE[prec], f"conv2d_wgrad_tensor_op {prec} {problem}: relative error {err:.3g}"


@pytest.mark.parametrize("problem, why", [("groups2_dil2_vec4", "groups=2"), ("m33_k33", "K=33"),
                                          ("7x7s2_same_c3", "C=3")])
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_conv2d_grads_fall_back_to_cuda_cores_and_say_why(prec, problem, why, rng):
    import fastconv as fc
    x_shape, w_shape, stride, pads, dil, groups = conv_args(problem)
    x, w = _conv_inputs(rng, problem, prec, ints=True)
    y_shape = _conv_ref(x, w, prec, conv_args(problem)).shape
    dy = operand(rng.integers(-3, 4, y_shape), prec)
    ops = tc_ops()
    report = fc.explain(lambda: (ops.conv2d_dgrad_tensor_op(dy, w, x_shape, stride, pads, dil, groups),
                                 ops.conv2d_wgrad_tensor_op(x, dy, w_shape, stride, pads, dil, groups)))
    dx, dw = report.result
    assert ops.launched and all("tensor_op" not in n for n in ops.launched), ops.launched
    notes = [e.text for e in report.events if e.kind == "note"]
    for op in ("conv2d_dgrad", "conv2d_wgrad"):
        assert any(n.startswith(f"CUDA-core {op} (fp32) instead of tensor cores") and why in n for n in notes), notes
    assert_same(dx, ref.conv2d_dgrad(operand_value(dy, prec), operand_value(w, prec), x_shape, stride, pads, dil,
                                     groups).astype(np.float32), exact=True, what=f"dgrad fallback {prec} {problem}")
    assert_same(dw, _wgrad_ref(x, dy, prec, (x_shape, w_shape, stride, pads, dil, groups)).astype(np.float32),
                exact=True, what=f"wgrad fallback {prec} {problem}")


def test_conv2d_grads_reject_bad_arguments(rng):
    args = TC_GRAD["3x3_same_c16_k24"]
    x, w, dy = _grad_inputs(rng, "3x3_same_c16_k24", "f16", ints=True)
    ops = tc_ops()
    with pytest.raises(ValueError, match=r"dy has shape \(2, 9, 7, 16\), expected \(2, 9, 7, 24\)"):
        ops.conv2d_dgrad_tensor_op(dy[..., :16], w, *args[:1], *args[2:])
    with pytest.raises(TypeError, match="dy is float16 but w is float32"):
        ops.conv2d_dgrad_tensor_op(dy, w.astype(np.float32), *args[:1], *args[2:])
    with pytest.raises(TypeError, match="x is float16 but dy is uint16"):
        ops.conv2d_wgrad_tensor_op(x, dy.view(np.uint16), *args[1:])
    with pytest.raises(TypeError, match="float32 or the operand type"):
        ops.conv2d_dgrad_tensor_op(dy, w, *args[:1], *args[2:], out_dtype=np.float64)


@pytest.mark.parametrize("alias", list(_traits()))
def test_column_major_shared_layouts_are_conflict_free(alias):
    """wgrad's column-major A ([BK][BM + 8], ldmatrix.trans / tf32 loads) and dgrad's column-major B
    ([BN][BK + kPadA], plain ldmatrix / tf32 loads), as gemm_tensor_op_mainloop addresses them."""
    size, bm, bn, bk, wm, wn, lda_row, _ = _traits()[alias]
    lda, ldb = bm + 8, lda_row   # column-major A pads like B; column-major B like row-major A
    requests = []
    for wm0 in range(0, bm, wm):
        for wn0 in range(0, bn, wn):
            for kk in range(0, bk, 8 if size == 4 else 16):
                if size == 4:
                    for i in range(wm // 16):
                        for r in range(4):
                            requests.append([(kk + t + 4 * (r // 2)) * lda + wm0 + i * 16 + g + 8 * (r % 2)
                                             for g in range(8) for t in range(4)])
                    for j in range(wn // 8):
                        for r in range(2):
                            requests.append([(wn0 + j * 8 + g) * ldb + kk + t + 4 * r for g in range(8) for t in range(4)])
                else:
                    for i in range(wm // 16):
                        for j in range(4):   # matrix j: k rows kk + 8(j/2) + r, m offset 8(j%2)
                            rows = [(kk + (j // 2) * 8 + r) * lda + wm0 + i * 16 + (j % 2) * 8 for r in range(8)]
                            requests.append([e * size // 4 + w for e in rows for w in range(4)])
                    for jn in range(0, wn // 8, 2):
                        for j in range(4):   # matrix j: n rows of block jn + j/2, k offset 8(j%2)
                            rows = [(wn0 + (jn + j // 2) * 8 + r) * ldb + kk + (j % 2) * 8 for r in range(8)]
                            requests.append([e * size // 4 + w for e in rows for w in range(4)])
    assert _conflict_free(requests)


# ---- strided dgrad: the stride-phase decomposition (csrc/conv/conv2d_dgrad_phase.h) -------------------
# Strides 2, 3 and (2, 3); padding symmetric, asymmetric and 'same'; dilation 1, 2 and 3 (3 with stride 2
# puts a phase's first dy row below 0); phases with no tap (1x1 s2, dil2 s2, R < stride), phases with no
# dx pixel (H or W < stride); several M tiles in the largest phase and fewer in the others; C over one N
# tile (72) and K with a partial reduction slice (136, 24).
def _same(x_shape, w_shape, stride, dil):
    return tuple(resolve_padding("same", x_shape[1:3], w_shape[:2], stride, dil))


TC_STRIDED_DGRAD = {
    "s2_3x3_pad1_odd": ((2, 9, 10, 8), (3, 3, 8, 8), (2, 2), ((1, 1), (1, 1)), (1, 1), 1),
    "s2_3x3_m_tiles": ((2, 17, 15, 16), (3, 3, 16, 8), (2, 2), ((1, 1), (1, 1)), (1, 1), 1),
    "s3_3x3_asym_k24": ((1, 11, 13, 16), (3, 3, 16, 24), (3, 3), ((2, 0), (1, 2)), (1, 1), 1),
    "s2_5x5_same": ((2, 8, 9, 8), (5, 5, 8, 16), (2, 2), _same((2, 8, 9, 8), (5, 5, 8, 16), (2, 2), (1, 1)),
                    (1, 1), 1),
    "s2_dil2_three_empty": ((1, 9, 8, 8), (3, 3, 8, 8), (2, 2), ((2, 2), (1, 1)), (2, 2), 1),
    "s2_dil3_neg_base": ((1, 10, 11, 8), (3, 3, 8, 16), (2, 2), ((3, 1), (0, 2)), (3, 3), 1),
    "s2_1x1_c72_k136": ((2, 7, 9, 72), (1, 1, 72, 136), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    "s3_2x2_some_empty": ((1, 10, 9, 8), (2, 2, 8, 16), (3, 3), ((1, 0), (0, 1)), (1, 1), 1),
    "s2x3_tiny": ((3, 1, 2, 8), (3, 3, 8, 8), (2, 3), ((1, 1), (1, 1)), (1, 1), 1),
    "s2_dil2_same": ((1, 12, 10, 16), (3, 3, 16, 8), (2, 2), _same((1, 12, 10, 16), (3, 3, 16, 8), (2, 2), (2, 2)),
                     (2, 2), 1),
}


def _strided_inputs(rng, problem, prec, ints):
    x_shape, w_shape, stride, pads, dil, groups = TC_STRIDED_DGRAD[problem]
    draw = (lambda s: rng.integers(-3, 4, s)) if ints else rng.standard_normal
    y_shape = ref.conv2d_fprop(np.zeros(x_shape), np.zeros(w_shape), stride, pads, dil, groups).shape
    return operand(draw(w_shape), prec), operand(draw(y_shape), prec)


def _strided_kernel(prec, out="float"):
    return f"fc::conv2d_dgrad_strided_tensor_op<fc::TensorOp{prec.capitalize()}Tile64, " \
           f"{16 // np.dtype(OPERAND[prec]).itemsize}, {out}>"


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("problem", list(TC_STRIDED_DGRAD))
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_strided_dgrad_exact_small_integers(prec, problem, order, rng):
    args = TC_STRIDED_DGRAD[problem]
    w, dy = _strided_inputs(rng, problem, prec, ints=True)
    ops = tc_ops(order, poison=order == "reverse")   # poisoned masked copies: a read of a masked tap shows
    got = ops.conv2d_dgrad_tensor_op(dy, w, args[0], *args[2:])
    assert ops.launched == [_strided_kernel(prec)], ops.launched
    assert got.dtype == np.float32 and got.shape == tuple(args[0])
    assert_same(got, _dgrad_ref(dy, w, prec, args).astype(np.float32), exact=True,
                what=f"conv2d_dgrad_strided_tensor_op {prec} {problem} {order}")


def test_strided_dgrad_writes_every_pixel_of_phases_without_taps(rng, monkeypatch):
    """1x1 stride 2: three of the four phases get no tap and must come out 0, not left as they were."""
    args = TC_STRIDED_DGRAD["s2_1x1_c72_k136"]
    w, dy = _strided_inputs(rng, "s2_1x1_c72_k136", "f16", ints=True)
    ops = tc_ops()
    xp_empty = ops.xp.empty
    monkeypatch.setattr(ops.xp, "empty", lambda shape, dtype=float: np.full(shape, np.nan, dtype))
    try:
        got = ops.conv2d_dgrad_tensor_op(dy, w, args[0], *args[2:])
    finally:
        monkeypatch.setattr(ops.xp, "empty", xp_empty)
    assert not np.isnan(got).any()
    assert (got[:, 1::2] == 0).all() and (got[:, :, 1::2] == 0).all() and np.abs(got[:, ::2, ::2]).sum() > 0
    assert_same(got, _dgrad_ref(dy, w, "f16", args).astype(np.float32), exact=True, what="s2 1x1 phases")


@pytest.mark.parametrize("prec", ["f16", "bf16"])
def test_strided_dgrad_operand_type_output_exact(prec, rng):
    args = TC_STRIDED_DGRAD["s3_3x3_asym_k24"]
    w, dy = _strided_inputs(rng, "s3_3x3_asym_k24", prec, ints=True)
    ops = tc_ops("reverse", poison=True)
    got = ops.conv2d_dgrad_tensor_op(dy, w, args[0], *args[2:], out_dtype=OPERAND[prec])
    assert ops.launched == [_strided_kernel(prec, {"f16": "__half", "bf16": "__nv_bfloat16"}[prec])]
    want = operand_value(operand(_dgrad_ref(dy, w, prec, args), prec), prec)   # the one output rounding
    assert_same(out_value(got, "operand"), want, exact=True, what=f"strided dgrad {prec} -> operand")


@pytest.mark.parametrize("problem", ["s2_3x3_m_tiles", "s2_dil3_neg_base", "s2_5x5_same"])
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_strided_dgrad_random_floats_bitwise_deterministic(prec, problem, rng):
    """Each dx element is one fixed-order K loop, so any thread interleaving gives the same bits."""
    args = TC_STRIDED_DGRAD[problem]
    w, dy = _strided_inputs(rng, problem, prec, ints=False)
    runs = [tc_ops(order).conv2d_dgrad_tensor_op(dy, w, args[0], *args[2:]) for order in ("forward", "reverse",
                                                                                          "random")]
    for other in runs[1:]:
        assert np.array_equal(runs[0].view(np.uint32), other.view(np.uint32))
    err = rel_err(runs[0].astype(np.float64), _dgrad_ref(dy, w, prec, args))
    assert err < TOLERANCE[prec], f"strided dgrad {prec} {problem}: relative error {err:.3g}"


def test_strided_dgrad_is_chosen_for_stride_above_one_and_explained(rng):
    import fastconv as fc
    args = TC_STRIDED_DGRAD["s2_3x3_pad1_odd"]
    w, dy = _strided_inputs(rng, "s2_3x3_pad1_odd", "f16", ints=True)
    ops = tc_ops()
    report = fc.explain(lambda: ops.conv2d_dgrad_tensor_op(dy, w, args[0], *args[2:]))
    notes = [e.text for e in report.events if e.kind == "note"]
    assert any("stride-phase decomposition: 2x2 = 4 phases" in n for n in notes), notes
    # stride 1 keeps the one-GEMM kernel
    s1 = TC_GRAD["3x3_same_c16_k24"]
    _, w1, dy1 = _grad_inputs(rng, "3x3_same_c16_k24", "f16", ints=True)
    ops.launched.clear()
    ops.conv2d_dgrad_tensor_op(dy1, w1, s1[0], *s1[2:])
    assert ops.launched == ["fc::conv2d_dgrad_tensor_op<fc::TensorOpF16Tile64, 8, float>"]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["native", "jit"])
@pytest.mark.parametrize("problem", list(TC_STRIDED_DGRAD))
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_gpu_strided_dgrad_exact_small_integers(prec, problem, backend):
    """The stride-phase dgrad through fastconv._C and NVRTC on an sm_80+ GPU (skipped without one)."""
    from test_gpu_backends import _gpu_ops, _OnDevice
    ops = _gpu_ops(backend)
    import cupy
    if int(cupy.cuda.Device().compute_capability) < 80:
        pytest.skip("the tensor-core kernels need sm_80 or newer")
    dev = _OnDevice(ops, {})
    args = TC_STRIDED_DGRAD[problem]
    w, dy = _strided_inputs(np.random.default_rng(0), problem, prec, ints=True)
    dx = dev.conv2d_dgrad_tensor_op(dy, w, args[0], *args[2:])
    assert_same(dx, _dgrad_ref(dy, w, prec, args).astype(np.float32), exact=True,
                what=f"{backend} strided dgrad {prec} {problem}")
