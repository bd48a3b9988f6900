"""The emulated sm_90a primitives (csrc/arch/sm90/primitives.h) against the PTX ISA, transcribed here
independently of the C++:

- wgmma m64nNk16 accumulator fragment ("Register Fragments: m64nNk16", figure for D): warp w of the
  warpgroup holds rows 16w..16w+15; with g = lane >> 2, t = lane % 4, register d[j] holds row
  16w + g + 8 * ((j % 4) // 2) and column 8 * (j // 4) + 2t + j % 2.
- shared-memory matrix descriptor ("Matrix Descriptor Format"): bits 0-13 start address >> 4, 16-29
  leading byte offset >> 4, 32-45 stride byte offset >> 4, 62-63 swizzle (0 interleave, 1 128B,
  2 64B, 3 32B); K-major canonical layouts ("Shared Memory Matrix Layout"): interleave = 8 x 16-byte
  core matrices, LBO apart along K and SBO apart along M/N; swizzled = rows of W bytes, 8-row atoms SBO
  apart, the 16-byte chunk index XORed with the address bits above the atom row ("Tensor Copy
  Swizzling Modes"; for 128B: chunk ^= row % 8).
- MN-major canonical layouts (imm-trans-a/b = 1; "Shared Memory Matrix Layout", and CUTLASS's
  make_gmma_desc<Major::MN>: ((T,W/16,m),(8,k)):((1,T,LBO),(W/16*T,SBO)) swizzled, ((T,1,m),(8,k)):
  ((1,T,SBO),(T,LBO)) interleaved, T = 16 bytes of elements): swizzled, W bytes of M/N contiguous, the next
  W-byte atom LBO apart, K rows W bytes apart, 8-row groups SBO apart; interleaved, 8 K-rows x 16 bytes
  core matrices, SBO apart along M/N and LBO apart along K.
- mbarrier ("mbarrier"): a phase completes when its pending arrivals and transaction bytes both reach
  zero; try_wait.parity(p) succeeds once the phase of parity p has completed, so parity 1 succeeds at
  once on a fresh barrier.
- TMA 2-D tiled copy: box rows packed at box[0] * elem bytes, elements outside the tensor zero, the
  swizzle applied on the shared address, the whole box's bytes completing on the mbarrier.
"""
import numpy as np
import pytest

from fastconv import emulator
from fastconv.backends.plans.tensor_map import (TMA_SWIZZLE_128B, TMA_SWIZZLE_NONE, encode_tensor_map_emulated)

ORDERS = ["forward", "reverse", "random"]
DESC_SWIZZLE_WIDTH = {0: 0, 1: 128, 2: 64, 3: 32}


def swizzled(addr, width):
    """Address bits [4, 4 + b) ^= bits [7, 7 + b), b = log2(width / 16)."""
    if width == 0:
        return addr
    return addr ^ (((addr >> 7) & (width // 16 - 1)) << 4)


def place_kmajor(image, start, mat, swizzle, lbo, sbo):
    """Writes mat (rows x 16, uint16 bits) where a K-major descriptor (start, lbo, sbo, swizzle) says."""
    width = DESC_SWIZZLE_WIDTH[swizzle]
    rows, k = mat.shape
    for r in range(rows):
        for kk in range(k):
            if width == 0:
                core = start + (r // 8) * sbo + (kk // 8) * lbo      # 8 x 8 core matrix, 128 contiguous bytes
                addr = core + (r % 8) * 16 + (kk % 8) * 2
            else:   # on the shared address, as TMA writes it: a start 32 bytes into a row (the next k16
                    # step) reads the chunks that TMA swizzled for the whole 128-byte row
                addr = swizzled(start + (r // 8) * sbo + (r % 8) * width + kk * 2, width)
                if width == 128 and start % 1024 == 0 and sbo % 1024 == 0:   # aligned atoms: chunk ^= row % 8
                    assert addr == start + (r // 8) * sbo + (r % 8) * 128 + ((kk * 2 // 16) ^ (r % 8)) * 16 + kk * 2 % 16
            image[addr:addr + 2] = np.frombuffer(np.uint16(mat[r, kk]).tobytes(), np.uint8)


def place_mnmajor(image, start, mat, swizzle, lbo, sbo):
    """Writes mat (rows x 16: row = M or N, column = K) where an MN-major descriptor says."""
    width = DESC_SWIZZLE_WIDTH[swizzle]
    rows, k = mat.shape
    for r in range(rows):
        for kk in range(k):
            rb = r * 2
            if width == 0:
                addr = start + (rb // 16) * sbo + (kk // 8) * lbo + (kk % 8) * 16 + rb % 16
            else:
                addr = swizzled(start + (rb // width) * lbo + (kk // 8) * sbo + (kk % 8) * width + rb % width, width)
            image[addr:addr + 2] = np.frombuffer(np.uint16(mat[r, kk]).tobytes(), np.uint8)


def to_bits(values, kind):
    if kind == "f16":
        return values.astype(np.float16).view(np.uint16)
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)   # small ints: exact


def fragment_coords(n):
    """(rows, cols) of shape (128, n/2): where each thread's d[j] lives (warpgroup-relative)."""
    tid = np.arange(128)[:, None]
    j = np.arange(n // 2)[None, :]
    warp, lane = tid // 32, tid % 32
    g, t = lane >> 2, lane % 4
    return 16 * warp + g + 8 * ((j % 4) // 2), 8 * (j // 4) + 2 * t + j % 2


LAYOUTS = {   # swizzle, a (offset, lbo, sbo), b (offset, lbo, sbo)
    "interleave": (0, (0, 128, 256), (4096, 128, 256)),
    "interleave_wide_lbo": (0, (0, 1024, 128), (8192, 2048, 128)),
    "swizzle128": (1, (0, 16, 1024), (8192, 16, 1024)),
    "swizzle128_k16_offset": (1, (32, 16, 1024), (8192 + 96, 16, 1024)),   # the k-step inside a 128-byte row
    "swizzle64": (2, (0, 16, 512), (4096, 16, 512)),
    "swizzle32": (3, (0, 16, 256), (4096, 16, 256)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("n,kind", [(64, "bf16"), (128, "bf16"), (64, "f16")])
def test_wgmma_fragment_and_descriptor(layout, n, kind):
    swizzle, (a_off, a_lbo, a_sbo), (b_off, b_lbo, b_sbo) = LAYOUTS[layout]
    rng = np.random.default_rng(n + len(layout))
    a = rng.integers(-4, 5, (64, 16)).astype(np.float32)
    b = rng.integers(-4, 5, (n, 16)).astype(np.float32)        # B K-major: row n holds B[:, n]
    image = np.full(32768, 0xFF, np.uint8)                     # 0xFFFF is NaN in f16 and bf16: misreads show
    place_kmajor(image, a_off, to_bits(a, kind), swizzle, a_lbo, a_sbo)
    place_kmajor(image, b_off, to_bits(b, kind), swizzle, b_lbo, b_sbo)
    threads = 256                                              # two warpgroups: warp % 4 picks the rows
    c_init = rng.integers(-8, 9, (threads, n // 2)).astype(np.float32)
    rows, cols = fragment_coords(n)
    d = a @ b.T
    for scale_d in (1, 0):
        out = np.zeros((threads, n // 2), np.float32)
        emulator.launch(f"hopper.wgmma_from_image_n{n}_{kind}", grid=1, block=threads,
                        args=(image, image.size, a_off, b_off, swizzle, a_lbo, a_sbo, b_lbo, b_sbo, c_init, scale_d,
                              out), shared_bytes=image.size + 1024, order="random", seed=7)
        expect = np.tile(d[rows, cols], (2, 1)) + scale_d * c_init
        np.testing.assert_array_equal(out, expect)


MN_LAYOUTS = {   # swizzle, a (offset, lbo, sbo), b (offset, lbo, sbo): LBO steps M/N atoms, SBO 8-row K groups
    "swizzle128": (1, (0, 8192, 1024), (8192, 2048, 1024)),
    "swizzle128_wgrad": (1, (2048, 8192, 1024), (16384 + 2048, 8192, 1024)),   # the wgrad's 2nd k16 step
    "swizzle64": (2, (0, 1024, 512), (4096, 1024, 512)),
    "swizzle32": (3, (0, 512, 256), (4096, 512, 256)),
    "interleave": (0, (0, 128, 256), (4096, 128, 256)),
}
MN_KERNELS = {"n128_bf16_mn_mn": (128, "bf16", True, True), "n64_f16_mn_k": (64, "f16", True, False),
              "n64_bf16_k_mn": (64, "bf16", False, True)}


@pytest.mark.parametrize("layout", list(MN_LAYOUTS))
@pytest.mark.parametrize("kernel", list(MN_KERNELS))
def test_wgmma_mn_major_operands(layout, kernel):
    """imm-trans-a/b: each MN-major operand placed by place_mnmajor, a K-major one by place_kmajor with the
    K-major layout of the same swizzle (LAYOUTS); the product is exact on small integers."""
    n, kind, trans_a, trans_b = MN_KERNELS[kernel]
    swizzle, (a_off, a_lbo, a_sbo), (b_off, b_lbo, b_sbo) = MN_LAYOUTS[layout]
    k_layout = {1: "swizzle128", 2: "swizzle64", 3: "swizzle32", 0: "interleave"}[swizzle]
    if not trans_a:
        a_off, a_lbo, a_sbo = LAYOUTS[k_layout][1]
    if not trans_b:
        b_off, b_lbo, b_sbo = LAYOUTS[k_layout][2]
    rng = np.random.default_rng(n + len(layout))
    a = rng.integers(-4, 5, (64, 16)).astype(np.float32)
    b = rng.integers(-4, 5, (n, 16)).astype(np.float32)
    image = np.full(32768, 0xFF, np.uint8)
    (place_mnmajor if trans_a else place_kmajor)(image, a_off, to_bits(a, kind), swizzle, a_lbo, a_sbo)
    (place_mnmajor if trans_b else place_kmajor)(image, b_off, to_bits(b, kind), swizzle, b_lbo, b_sbo)
    threads = 256
    c_init = rng.integers(-8, 9, (threads, n // 2)).astype(np.float32)
    rows, cols = fragment_coords(n)
    out = np.zeros((threads, n // 2), np.float32)
    emulator.launch(f"hopper.wgmma_from_image_{kernel}", grid=1, block=threads,
                    args=(image, image.size, a_off, b_off, swizzle, a_lbo, a_sbo, b_lbo, b_sbo, c_init, 1, out),
                    shared_bytes=image.size + 1024, order="random", seed=5)
    np.testing.assert_array_equal(out, np.tile((a @ b.T)[rows, cols], (2, 1)) + c_init)


def test_wgmma_mn_major_is_not_k_major():
    """The transpose flag changes the addressing: an MN-major image read as K-major gives other numbers."""
    swizzle, (a_off, a_lbo, a_sbo), (b_off, b_lbo, b_sbo) = MN_LAYOUTS["swizzle128"]
    rng = np.random.default_rng(9)
    a, b = rng.integers(-4, 5, (64, 16)).astype(np.float32), rng.integers(-4, 5, (64, 16)).astype(np.float32)
    image = np.full(32768, 0xFF, np.uint8)
    place_mnmajor(image, a_off, to_bits(a, "bf16"), swizzle, a_lbo, a_sbo)
    place_kmajor(image, b_off, to_bits(b, "bf16"), swizzle, 16, 1024)
    args = (image, image.size, a_off, b_off, swizzle, a_lbo, a_sbo, 16, 1024, np.zeros((128, 32), np.float32), 0)
    out = np.zeros((128, 32), np.float32)
    emulator.launch("hopper.wgmma_from_image_n64_bf16", grid=1, block=128, args=args + (out,),
                    shared_bytes=image.size + 1024)
    rows, cols = fragment_coords(64)
    assert not np.array_equal(out, (a @ b.T)[rows, cols])


def test_wgmma_lane_rows_match_the_isa_figure():
    """Spot checks read off the ISA figure: lane 5 of warp 2 holds (row 33, cols 2, 3), then +8 rows."""
    rows, cols = fragment_coords(64)
    tid = 2 * 32 + 5
    assert list(zip(rows[tid, :4], cols[tid, :4])) == [(33, 2), (33, 3), (41, 2), (41, 3)]
    assert (rows[tid, 4], cols[tid, 4]) == (33, 10)


def test_wgmma_misplaced_operand_reads_nan():
    """An image where B is not where the descriptor points: the product is NaN (0xFFFF), not silently 0."""
    image = np.full(16384, 0xFF, np.uint8)
    place_kmajor(image, 0, to_bits(np.ones((64, 16)), "bf16"), 1, 16, 1024)
    out = np.zeros((128, 32), np.float32)
    emulator.launch("hopper.wgmma_from_image_n64_bf16", grid=1, block=128,
                    args=(image, image.size, 0, 8192, 1, 16, 1024, 16, 1024, np.zeros((128, 32), np.float32), 0,
                          out), shared_bytes=image.size + 1024)
    assert np.isnan(out).all()


def test_wgmma_lanes_must_agree_on_descriptors():
    out = np.zeros(128, np.float32)
    emulator.launch("hopper.wgmma_lane_mismatch", grid=1, block=128, args=(-1, out), shared_bytes=8192)
    np.testing.assert_array_equal(out, 0)
    with pytest.raises(emulator.EmulatorError, match="lanes of a warp passed different descriptors.*lane 5"):
        emulator.launch("hopper.wgmma_lane_mismatch", grid=1, block=128, args=(5, out), shared_bytes=8192)


@pytest.mark.parametrize("order", ORDERS)
def test_wgmma_reading_generic_stores_without_a_proxy_fence_is_reported(order):
    """Generic-proxy stores to shared memory reach wgmma (the async proxy) only through fence.proxy.async
    (PTX ISA, memory consistency model: proxies); wgmma_lane_mismatch fences its zeros, this one does not."""
    out = np.zeros(128, np.float32)
    with pytest.raises(emulator.EmulatorError, match=r"wgmma.mma_async operand.*fence.proxy.async.shared::cta"):
        emulator.launch("hopper.wgmma_without_proxy_fence", grid=1, block=128, args=(out,), shared_bytes=8192,
                        order=order, seed=2)


def run_phases(order, seed, second_bytes=32):
    log = np.zeros(32, np.int32)
    emulator.launch("hopper.mbarrier_phases", grid=1, block=4, args=(log, second_bytes), order=order, seed=seed)
    return list(log[1:1 + log[0]])


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mbarrier_waiter_passes_only_after_arrivals_and_tx(order, seed):
    events = run_phases(order, seed)
    assert sorted(events) == [1, 2, 3, 4, 5, 11, 12, 13, 15]
    pos = {e: i for i, e in enumerate(events)}
    assert pos[4] < pos[5]                                     # parity 1 of a fresh barrier passes at once
    assert pos[5] > max(pos[1], pos[2], pos[3])                # phase 0: the arrival and both complete_tx
    assert pos[15] > max(pos[11], pos[12], pos[13])            # phase 1, waited with parity 1
    assert min(pos[11], pos[12], pos[13]) > pos[5]             # round 2 starts after phase 0 completed


def test_mbarrier_orders_are_exercised():
    """The check above means something: in reverse order the waiter runs before the arrivals."""
    assert run_phases("reverse", 0)[:5] == [4, 3, 2, 1, 5] and run_phases("forward", 0)[:5] == [4, 1, 2, 3, 5]


def test_mbarrier_missing_tx_bytes_is_a_reported_deadlock():
    with pytest.raises(emulator.EmulatorError, match=r"deadlock.*mbarrier.try_wait.parity.*16 transaction bytes"):
        run_phases("forward", 0, second_bytes=16)


def tma_expect(tensor, c0, c1, box, swizzle_width):
    rows, cols = tensor.shape
    img = np.zeros(box[0] * box[1] * 2, np.uint8)
    for y in range(box[1]):
        for x in range(box[0]):
            gy, gx = c1 + y, c0 + x
            v = tensor[gy, gx] if 0 <= gy < rows and 0 <= gx < cols else 0
            addr = swizzled(y * box[0] * 2 + x * 2, swizzle_width)
            img[addr:addr + 2] = np.frombuffer(np.uint16(v).tobytes(), np.uint8)
    return img


def run_tma(tensor, c0, c1, box, swizzle, box_bytes=None, wait=1, raw_map=None, poison=False, order="random"):
    rows, cols = tensor.shape
    tmap = raw_map or encode_tensor_map_emulated(0, 2, (cols, rows), cols * 2, box, swizzle)
    nbytes = box[0] * box[1] * 2
    out = np.zeros(nbytes, np.uint8)
    emulator.launch("hopper.tma_box", grid=1, block=64,
                    args=(tensor, tmap, c0, c1, nbytes if box_bytes is None else box_bytes, wait, out),
                    shared_bytes=nbytes + 1024, order=order, seed=3, poison_async=poison)
    return out


@pytest.mark.parametrize("c0,c1", [(0, 0), (32, 40), (-8, -3), (64, 48), (100, 0)])
@pytest.mark.parametrize("swizzle,box", [(TMA_SWIZZLE_128B, (64, 16)), (TMA_SWIZZLE_NONE, (16, 8))])
def test_tma_box_out_of_bounds_zero_fill_and_swizzle(c0, c1, swizzle, box):
    rng = np.random.default_rng(abs(c0 * 7 + c1))
    tensor = rng.integers(1, 2**15, (50, 72)).astype(np.uint16)   # nonzero, so zero fill is visible
    out = run_tma(tensor, c0, c1, box, swizzle)
    np.testing.assert_array_equal(out, tma_expect(tensor, c0, c1, box, 128 if swizzle == TMA_SWIZZLE_128B else 0))




@pytest.mark.parametrize("poison", [False, True])
def test_tma_read_before_the_wait_sees_old_bytes_and_the_block_still_waits(poison):
    """wait=0 reads the box before waiting on the mbarrier: the copy has not landed (the emulator runs it as
    late as a GPU could), yet the block waits before it ends, so no copy is in flight at exit (which the
    emulator reports, and which on a GPU would land in a finished CTA's shared memory)."""
    tensor = np.arange(50 * 72, dtype=np.uint16).reshape(50, 72)
    out = run_tma(tensor, 0, 0, (64, 16), TMA_SWIZZLE_128B, wait=0, poison=poison)
    from fastconv import _emu   # its poison pattern (csrc/emu/emu.h kPoisonWord): unwritten shared memory reads as it
    assert (out.view("<u4") == _emu.POISON_WORD).all()


def test_tma_wrong_expect_tx_is_a_reported_deadlock():
    tensor = np.arange(50 * 72, dtype=np.uint16).reshape(50, 72)
    with pytest.raises(emulator.EmulatorError, match="deadlock.*-2 transaction bytes"):
        run_tma(tensor, 0, 0, (64, 16), TMA_SWIZZLE_128B, box_bytes=64 * 16 * 2 - 2)


def test_tma_map_errors_are_clear():
    tensor = np.arange(50 * 72, dtype=np.uint16).reshape(50, 72)
    with pytest.raises(emulator.EmulatorError, match="not made by the emulator's encoder"):
        run_tma(tensor, 0, 0, (64, 16), TMA_SWIZZLE_128B, raw_map=bytes(128))
    with pytest.raises(emulator.EmulatorError, match="equal to the swizzle width"):
        run_tma(tensor, 0, 0, (32, 16), TMA_SWIZZLE_128B)
    with pytest.raises(ValueError, match="row stride 140 bytes must be a multiple of 16"):
        encode_tensor_map_emulated(0, 2, (70, 50), 140, (64, 16), TMA_SWIZZLE_128B)
    with pytest.raises(ValueError, match="exceeds the 128-byte swizzle"):
        encode_tensor_map_emulated(0, 2, (72, 50), 144, (128, 16), TMA_SWIZZLE_128B)


# ---- the same kernels on an H100: the emulator's model against the hardware -----------------------------
def _h100_module(names):
    from fastconv.backends.device import cuda_status
    ok, why = cuda_status()
    if not ok:
        pytest.skip(why)
    cupy = pytest.importorskip("cupy")
    if str(cupy.cuda.Device().compute_capability) != "90":
        pytest.skip("needs an sm_90 (Hopper) GPU")
    from pathlib import Path
    csrc = Path(__file__).resolve().parents[2] / "csrc"
    module = cupy.RawModule(code='#include "selftest/sm90.cuh"\n',
                            options=("-std=c++17", f"-I{csrc}", "-arch=sm_90a"), name_expressions=names)
    return cupy, module


@pytest.mark.gpu
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_wgmma_fragment_and_descriptor_on_h100(layout):
    name = "fc_sm90_selftest::wgmma_from_image<64, __nv_bfloat16>"
    cupy, module = _h100_module([name])
    swizzle, (a_off, a_lbo, a_sbo), (b_off, b_lbo, b_sbo) = LAYOUTS[layout]
    rng = np.random.default_rng(3)
    a, b = rng.integers(-4, 5, (64, 16)).astype(np.float32), rng.integers(-4, 5, (64, 16)).astype(np.float32)
    image = np.full(32768, 0xFF, np.uint8)
    place_kmajor(image, a_off, to_bits(a, "bf16"), swizzle, a_lbo, a_sbo)
    place_kmajor(image, b_off, to_bits(b, "bf16"), swizzle, b_lbo, b_sbo)
    c_init = rng.integers(-8, 9, (128, 32)).astype(np.float32)
    out = cupy.zeros((128, 32), np.float32)
    fn = module.get_function(name)
    fn.max_dynamic_shared_size_bytes = image.size + 1024
    i32 = np.int32
    fn((1,), (128,), (cupy.asarray(image), i32(image.size), i32(a_off), i32(b_off), i32(swizzle), i32(a_lbo),
                      i32(a_sbo), i32(b_lbo), i32(b_sbo), cupy.asarray(c_init), i32(1), out),
       shared_mem=image.size + 1024)
    rows, cols = fragment_coords(64)
    np.testing.assert_array_equal(out.get(), (a @ b.T)[rows, cols] + c_init)


@pytest.mark.gpu
@pytest.mark.parametrize("c0,c1", [(32, 40), (-8, -3)])
def test_tma_box_on_h100(c0, c1):
    from fastconv.backends.plans.tensor_map import encode_tensor_map_cuda
    name = "fc_sm90_selftest::tma_box"
    cupy, module = _h100_module([name])
    tensor = np.random.default_rng(1).integers(1, 2**15, (50, 72)).astype(np.uint16)
    dev = cupy.asarray(tensor)
    box = (64, 16)
    tmap = encode_tensor_map_cuda(int(dev.data.ptr), np.uint16, (72, 50), 144, box, TMA_SWIZZLE_128B)
    nbytes = box[0] * box[1] * 2
    out = cupy.zeros(nbytes, np.uint8)
    fn = module.get_function(name)
    fn((1,), (64,), (dev, np.frombuffer(tmap, np.dtype((np.void, 128)))[0], np.int32(c0), np.int32(c1),
                     np.int32(nbytes), np.int32(1), out), shared_mem=nbytes + 1024)
    np.testing.assert_array_equal(out.get(), tma_expect(tensor, c0, c1, box, 128))
