"""mma.sync / ldmatrix / cvt.rna.tf32 wrappers: every lane must hold exactly the elements the PTX ISA
assigns it. The layouts below are transcribed from the PTX ISA ("Matrix Fragments for
mma.m16n8k8", "... for mma.m16n8k16 with floating point type", "ldmatrix"), independently of the
C++ code in csrc/arch/sm80/mma.h: groupID = laneid >> 2, threadID_in_group = laneid % 4.
"""
import functools

import numpy as np
import pytest

from fastconv import emulator


@functools.lru_cache(maxsize=None)
def frag(lane, row_rule, col_rule):
    g, t = lane >> 2, lane % 4
    return eval(row_rule, {}, {"g": g, "t": t}), eval(col_rule, {}, {"g": g, "t": t})


@functools.lru_cache(maxsize=None)
def coords(rules_items):
    """(rows, cols) index arrays of shape (32, n_elements) for a rule table."""
    rc = np.array([[frag(lane, r, c) for _, (r, c) in rules_items] for lane in range(32)])
    return rc[..., 0], rc[..., 1]


# element index -> (row, col) rules, as the PTX ISA tables state them
TF32_A = {0: ("g", "t"), 1: ("g + 8", "t"), 2: ("g", "t + 4"), 3: ("g + 8", "t + 4")}
TF32_B = {0: ("t", "g"), 1: ("t + 4", "g")}
F16_A = {0: ("g", "2*t"), 1: ("g", "2*t + 1"), 2: ("g + 8", "2*t"), 3: ("g + 8", "2*t + 1"),
         4: ("g", "2*t + 8"), 5: ("g", "2*t + 9"), 6: ("g + 8", "2*t + 8"), 7: ("g + 8", "2*t + 9")}
F16_B = {0: ("2*t", "g"), 1: ("2*t + 1", "g"), 2: ("2*t + 8", "g"), 3: ("2*t + 9", "g")}
ACC = {0: ("g", "2*t"), 1: ("g", "2*t + 1"), 2: ("g + 8", "2*t"), 3: ("g + 8", "2*t + 1")}

KINDS = {  # kernel, K, A rules, B rules, element encoder to 32/16-bit patterns
    "tf32": ("selftest.mma_m16n8k8_tf32", 8, TF32_A, TF32_B),
    "f16": ("selftest.mma_m16n8k16_f16", 16, F16_A, F16_B),
    "bf16": ("selftest.mma_m16n8k16_bf16", 16, F16_A, F16_B),
}


def to_bits(x, kind):
    x = np.asarray(x, np.float32)
    if kind == "tf32":
        return x.view(np.uint32)                     # values used here are exact in tf32
    if kind == "f16":
        return x.astype(np.float16).view(np.uint16).astype(np.uint32)
    return (x.view(np.uint32) >> 16).astype(np.uint32)  # exact in bf16 (small integers)


def pack(mat, rules, kind):
    """Per-lane registers: one element per .b32 for tf32, two (low half first) for f16/bf16."""
    rows, cols = coords(tuple(sorted(rules.items())))
    per_elem = to_bits(mat[rows, cols], kind)
    if kind == "tf32":
        return per_elem
    return per_elem[:, 0::2] | (per_elem[:, 1::2] << 16)


def pack_acc(mat):
    rows, cols = coords(tuple(sorted(ACC.items())))
    return np.asarray(mat, np.float32)[rows, cols]


def unpack_acc(regs):
    rows, cols = coords(tuple(sorted(ACC.items())))
    mat = np.full((16, 8), np.nan, np.float32)
    mat[rows, cols] = regs
    return mat


def run_mma(kind, As, Bs, Cs):
    name, K, arules, brules = KINDS[kind]
    a = np.stack([pack(A, arules, kind) for A in As])
    b = np.stack([pack(B, brules, kind) for B in Bs])
    c = np.stack([pack_acc(C) for C in Cs])
    d = np.zeros_like(c)
    emulator.launch(name, grid=len(As), block=32, args=(a, b, c, d))
    return [unpack_acc(x) for x in d]


def test_layout_rules_cover_every_element_once():
    for rules, shape in [(TF32_A, (16, 8)), (TF32_B, (8, 8)), (F16_A, (16, 16)), (F16_B, (16, 8)), (ACC, (16, 8))]:
        seen = sorted(frag(lane, r, c) for lane in range(32) for r, c in rules.values())
        assert seen == [(i, j) for i in range(shape[0]) for j in range(shape[1])]


@pytest.mark.parametrize("kind", ["tf32", "f16", "bf16"])
def test_mma_every_lane_holds_the_ptx_elements(kind):
    """One-hot probes: A[r, k] = 1 with row k of B = 1..8 must give D = row r of 1..8 and nothing
    else; B[k, c] = 1 with column k of A = 1..16 must give D[:, c] = 1..16."""
    _, K, _, _ = KINDS[kind]
    As, Bs, want = [], [], []
    for r in range(16):
        for k in range(K):
            A = np.zeros((16, K), np.float32); A[r, k] = 1
            B = np.zeros((K, 8), np.float32); B[k, :] = np.arange(1, 9)
            As.append(A); Bs.append(B); want.append(A @ B)
    for k in range(K):
        for c in range(8):
            A = np.zeros((16, K), np.float32); A[:, k] = np.arange(1, 17)
            B = np.zeros((K, 8), np.float32); B[k, c] = 1
            As.append(A); Bs.append(B); want.append(A @ B)
    Cs = [np.zeros((16, 8), np.float32)] * len(As)
    for i, (got, w) in enumerate(zip(run_mma(kind, As, Bs, Cs), want)):
        np.testing.assert_array_equal(got, w, err_msg=f"probe {i}")


@pytest.mark.parametrize("kind", ["tf32", "f16", "bf16"])
def test_mma_is_a_matrix_product_plus_accumulator(kind):
    _, K, _, _ = KINDS[kind]
    rng = np.random.default_rng(len(kind))
    As = [rng.integers(-8, 9, (16, K)).astype(np.float32) for _ in range(4)]
    Bs = [rng.integers(-8, 9, (K, 8)).astype(np.float32) for _ in range(4)]
    Cs = [rng.integers(-100, 100, (16, 8)).astype(np.float32) for _ in range(4)]
    for got, A, B, C in zip(run_mma(kind, As, Bs, Cs), As, Bs, Cs):
        np.testing.assert_array_equal(got, A @ B + C)


def test_mma_accumulator_regs_pass_through_when_inputs_are_zero():
    C = np.arange(128, dtype=np.float32).reshape(16, 8)
    [got] = run_mma("f16", [np.zeros((16, 16), np.float32)], [np.zeros((16, 8), np.float32)], [C])
    np.testing.assert_array_equal(got, C)


def test_tf32_mma_ignores_the_low_mantissa_bits():
    A = np.full((16, 8), 1.0 + 2.0**-12, np.float32)   # below tf32 precision: truncated to 1.0
    B = np.ones((8, 8), np.float32)
    [got] = run_mma("tf32", [A], [B], [np.zeros((16, 8), np.float32)])
    np.testing.assert_array_equal(got, 8.0)


@pytest.mark.parametrize("num,trans", [(1, False), (2, False), (4, False), (1, True), (2, True), (4, True)])
def test_ldmatrix_lane_assignment(num, trans):
    src = np.arange(num * 64, dtype=np.uint16).reshape(num, 8, 8) * 3 + 1   # every element distinct
    out = np.zeros((32, num), np.uint32)
    name = f"selftest.ldmatrix_x{num}" + ("_trans" if trans else "")
    emulator.launch(name, 1, 32, (src, out))
    for lane in range(32):
        row, col = lane // 4, 2 * (lane % 4)    # PTX: thread l holds row l/4, elements 2(l%4), +1
        for j in range(num):
            m = src[j].T if trans else src[j]   # .trans delivers the transposed matrix
            lo, hi = int(out[lane, j]) & 0xFFFF, int(out[lane, j]) >> 16
            assert (lo, hi) == (m[row, col], m[row, col + 1]), (lane, j)


def test_ldmatrix_and_mma_compose_into_a_half_gemm():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((16, 16)).astype(np.float16)
    B = rng.standard_normal((16, 8)).astype(np.float16)
    D = np.zeros((16, 8), np.float32)
    emulator.launch("selftest.hgemm_ldmatrix_mma", 1, 32, (A, B, D))
    np.testing.assert_allclose(D, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-6, atol=1e-6)


def tf32_rna(x):
    """Round float32 to tf32 (10 mantissa bits), to nearest with ties away from zero, by hand."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    sign, mag = u & 0x80000000, u & 0x7FFFFFFF
    low = mag & 0x1FFF
    mag = mag - low + np.where(low >= 0x1000, np.uint64(0x2000), np.uint64(0))  # ties (low == 0x1000) go up in magnitude
    mag = np.minimum(mag, np.uint64(0x7F800000))  # carried past the largest finite: infinity
    out = (sign | mag).astype(np.uint32)
    return np.where(np.isnan(np.asarray(x, np.float32)), np.uint32(0x7FFFFFFF), out)


def test_float_to_tf32_rounding():
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2**19, 2000, dtype=np.uint64).astype(np.uint32) << 13) | 0x1000
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x00001000,
                        0x00003000, 0x7FC00000, 0xFFFFFFFF, 0x3F801000, 0x3F803000, 0xBF801000], np.uint32)
    x = np.concatenate([bits, ties, special]).view(np.float32)
    out = np.zeros(x.size, np.uint32)
    emulator.launch("selftest.float_to_tf32", (x.size + 255) // 256, 256, (x, out, x.size))
    want = tf32_rna(x)
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(out[finite], want[finite])
    assert np.isnan(out[~finite].view(np.float32)).all()
    assert (out & 0x1FFF == 0)[finite].all()


def test_tf32_gemm_with_fragments_from_global_memory():
    rng = np.random.default_rng(8)
    A = rng.standard_normal((16, 8)).astype(np.float32)
    B = rng.standard_normal((8, 8)).astype(np.float32)
    C = rng.standard_normal((16, 8)).astype(np.float32)
    D = np.zeros((16, 8), np.float32)
    emulator.launch("selftest.tf32_gemm_mma", 1, 32, (A, B, C, D))
    a32, b32 = tf32_rna(A.ravel()).view(np.float32).reshape(16, 8), tf32_rna(B.ravel()).view(np.float32).reshape(8, 8)
    np.testing.assert_allclose(D, a32.astype(np.float64) @ b32 + C, rtol=1e-6, atol=1e-6)
