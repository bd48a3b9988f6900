"""Launch plans of the tensor-core kernels (csrc/*/*_tensor_op_sm80.h, sm_80+ mma.sync): GEMM and conv2d
fprop / dgrad / wgrad in tf32, fp16 and bf16 with fp32 accumulation, and the fused bias + residual +
activation epilogue. A mixin of KernelOps (plans/kernel_ops.py)."""
from __future__ import annotations

import numpy as np

from ... import tuning
from ...explain import note
from ...shapes import needs_64bit_index
from .. import kernel_table
from .common import ACTIVATIONS, TARGET_BLOCKS, ceil_div, conv2d_problem


# Operand dtype -> (C++ element type, traits prefix). bfloat16 travels as uint16 raw bits (NumPy and
# CuPy have no bfloat16), so a uint16 array means bf16 operands; float32 operands run as tf32.
TENSOR_OP_TYPES = {np.dtype(np.float32): ("float", "Tf32"), np.dtype(np.float16): ("__half", "F16"),
                   np.dtype(np.uint16): ("__nv_bfloat16", "Bf16")}
# Mirrors csrc/gemm/gemm_tensor_op_sm80.h: traits suffix -> (BM, BN, threads).
TENSOR_OP_TILES = {"Tile64": (64, 64, 128), "Tile128": (128, 128, 256)}
# C % TENSOR_OP_CONV_CHANNELS == 0 selects the tensor-core conv fprop (the vector path; 16-byte
# cp.async of 8 halves, or 2 x 4 floats); other shapes run the CUDA-core kernel.
TENSOR_OP_CONV_CHANNELS = 8
# Operand dtype -> the dtype name of tuning-file entries (fastconv/tuning.py).
TENSOR_OP_TUNING_DTYPES = {np.dtype(np.float32): "tf32", np.dtype(np.float16): "float16",
                           np.dtype(np.uint16): "bfloat16"}


def tensor_op_kernel_names() -> list[str]:
    """The sm_80+ tensor-core instantiations: a view of fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(("sm80",))


def tensor_op_splits(rows, cols, kdim, tile="Tile64", bk=32, force=None):
    """Split-k of conv2d_wgrad_tensor_op, from the shape alone (so a shape always sums in one order), as
    common.choose_splits does for the CUDA-core wgrad: enough CTAs to fill the GPU, each split at least
    16 k-slices long. Returns (splits, k_per_split), k_per_split a multiple of BK."""
    bm, bn, _ = TENSOR_OP_TILES[tile]
    if force:
        splits = force
    else:
        splits = max(1, min(ceil_div(TARGET_BLOCKS, ceil_div(rows, bm) * ceil_div(cols, bn)), kdim // (bk * 16), 64))
    k_per_split = max(bk, ceil_div(ceil_div(kdim, splits), bk) * bk)
    return ceil_div(kdim, k_per_split), k_per_split


def _tensor_op_types(dtype, out_dtype):
    dt = np.dtype(dtype)
    if dt not in TENSOR_OP_TYPES:
        raise TypeError(f"tensor-core kernels take float32 (tf32), float16 or uint16 (bfloat16 bits), got {dt}")
    out = np.dtype(np.float32 if out_dtype is None else out_dtype)
    if out not in (np.dtype(np.float32), dt):
        raise TypeError(f"tensor-core output must be float32 or the operand type {dt}, got {out}")
    return dt, out


def bf16_bits_to_float32(xp, bits):
    return (bits.astype(xp.uint32) << 16).view(xp.float32)


def float32_to_bf16_bits(xp, f):
    """Round to nearest even (as __float2bfloat16); NaN -> 0x7fff, CUDA's canonical bf16 NaN."""
    u = xp.ascontiguousarray(f, dtype=xp.float32).view(xp.uint32)
    r = ((u + xp.uint32(0x7FFF) + ((u >> 16) & xp.uint32(1))) >> 16).astype(xp.uint16)
    return xp.where(xp.isnan(f), xp.uint16(0x7FFF), r)


def _widen(xp, a):
    """Operand array -> float32 values (bf16 bits widened exactly)."""
    return bf16_bits_to_float32(xp, a) if a.dtype == np.uint16 else a.astype(np.float32)


def _narrow(xp, y, out):
    """float32 values -> the output dtype (bf16 bits rounded to nearest even)."""
    return float32_to_bf16_bits(xp, y) if out == np.uint16 else y.astype(out, copy=False)


class TensorOpPlans:
    def _tensor_op_name(self, op, prefix, tile, vec, out_ctype=None):
        name = f"fc::{op}<fc::TensorOp{prefix}{tile}, {vec}" + (f", {out_ctype}>" if out_ctype else ">")
        return name if name in tensor_op_kernel_names() else None

    def _tensor_op_residual(self, residual, shape, dt, out):
        """The residual input of the epilogue, converted to the output dtype: (array, has_residual)."""
        if residual is None:
            return self.xp.zeros((1,), out), 0
        r = self._c(residual)
        if tuple(r.shape) != tuple(shape):
            raise ValueError(f"residual has shape {tuple(r.shape)}, expected the output's {tuple(shape)}")
        if r.dtype not in (np.dtype(np.float32), dt):
            raise TypeError(f"residual must be float32 or the operand dtype {dt}, got {r.dtype}")
        if r.dtype == out:
            return r, 1
        return self._c(_narrow(self.xp, _widen(self.xp, r), out)), 1

    def gemm_tensor_op(self, a, b, bias=None, activation=None, alpha=0.0, out_dtype=None, residual=None):
        """C = act(A @ B + bias + residual) on tensor cores, fp32 accumulation. A (M, K) and B (K, N)
        row-major, both float32 (tf32 mma), float16 or uint16 (bfloat16 bits); bias float32 (N,); C float32
        (default) or the operand dtype; residual (M, N), float32 or the operand dtype, is read in C's dtype.
        Knob: force_tensor_op_tile ('Tile64' / 'Tile128')."""
        a, b = self._c(a), self._c(b)
        dt, out = _tensor_op_types(a.dtype, out_dtype)
        if b.dtype != dt:
            raise TypeError(f"A is {dt} but B is {b.dtype}")
        (m, kdim), (kb, n) = a.shape, b.shape
        if kdim != kb:
            raise ValueError(f"gemm_tensor_op: A is {a.shape}, B is {b.shape}")
        if needs_64bit_index(a.shape, b.shape, (m, n)):
            raise ValueError("gemm_tensor_op: 32-bit offsets only; a tensor has more than 2^31 - 1 elements")
        ct, prefix = TENSOR_OP_TYPES[dt]
        out_ct = "float" if out == np.float32 else ct
        c = self.xp.empty((m, n), out)
        if c.size == 0:
            return c
        full = 16 // dt.itemsize   # one 16-byte cp.async
        narrow = 4 // dt.itemsize   # one 4-byte cp.async
        ptrs = (self._ptr(a), self._ptr(b))
        if kdim % full == 0 and n % full == 0 and all(p % 16 == 0 for p in ptrs):
            vec = full
            note("tensor cores, 16-byte cp.async: K and N are multiples of 16 bytes, pointers aligned")
        elif kdim % narrow == 0 and n % narrow == 0 and all(p % 4 == 0 for p in ptrs):
            vec = narrow
            note("tensor cores, 4-byte cp.async: K or N is not a multiple of 16 bytes (or a pointer unaligned)")
        else:
            raise ValueError(f"gemm_tensor_op: 16-bit operands need even K and N (got K={kdim}, N={n})")
        tile = getattr(self, "force_tensor_op_tile", None)
        if tile is None:
            out_name = TENSOR_OP_TUNING_DTYPES.get(out, out.name).replace("tf32", "float32")
            tuned = self._tuned("gemm_tensor_op", TENSOR_OP_TUNING_DTYPES[dt],
                                lambda: tuning.gemm_problem(m, n, kdim, out=out_name))
            tile = tuned.tile([t for t in TENSOR_OP_TILES if self._tensor_op_name(
                "gemm_tensor_op", prefix, t, vec, out_ct)]) if tuned else None
        if tile is None:
            bm, bn, _ = TENSOR_OP_TILES["Tile128"]
            big = ceil_div(m, bm) * ceil_div(n, bn) >= TARGET_BLOCKS
            tile = "Tile128" if big and self._tensor_op_name("gemm_tensor_op", prefix, "Tile128", vec, out_ct) else "Tile64"
        name = self._tensor_op_name("gemm_tensor_op", prefix, tile, vec, out_ct)
        if name is None:
            raise ValueError(f"no tensor-core GEMM instantiation for {prefix} {tile}, {vec}-element copies, {out_ct} out")
        bm, bn, threads = TENSOR_OP_TILES[tile]
        bias_arr = self._c(bias).astype(np.float32, copy=False) if bias is not None else self.xp.zeros((1,), np.float32)
        res, has_res = self._tensor_op_residual(residual, (m, n), dt, out)
        self._launch(name, self._tile_grid(ceil_div(m, bm), ceil_div(n, bn)), (threads,),
                     (np.int32(m), np.int32(n), np.int32(kdim), a, np.int32(kdim), b, np.int32(n), c, np.int32(n),
                      bias_arr, np.int32(bias is not None), np.int32(ACTIVATIONS[activation]), np.float32(alpha),
                      res, np.int32(has_res)))
        return c

    def conv2d_fprop_tensor_op(self, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
                               bias=None, activation=None, alpha=0.0, out_dtype=None, residual=None):
        """y = act(conv2d(x, w) + bias + residual) on tensor cores (implicit GEMM, fp32 accumulation) when
        groups == 1, C % 8 == 0, K a multiple of 16 bytes and x, w 16-byte aligned; otherwise the CUDA-core
        fp32 kernel on operands widened to float32 (same values). Operand/output dtypes as in gemm_tensor_op;
        bias float32; residual shaped as y, float32 or the operand dtype, read in y's dtype."""
        x, w = self._c(x), self._c(w)
        dt, out = _tensor_op_types(x.dtype, out_dtype)
        if w.dtype != dt:
            raise TypeError(f"x is {dt} but w is {w.dtype}")
        pb, y_shape = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
        ct, prefix = TENSOR_OP_TYPES[dt]
        out_ct = "float" if out == np.float32 else ct
        c, k = x.shape[3], w.shape[3]
        vec = 16 // dt.itemsize
        reasons = []
        if groups != 1:
            reasons.append(f"groups={groups} (the tensor-core kernel takes groups == 1)")
        if c % TENSOR_OP_CONV_CHANNELS:
            reasons.append(f"C={c} is not a multiple of {TENSOR_OP_CONV_CHANNELS}")
        if k % vec:
            reasons.append(f"K={k} is not a multiple of {vec}")
        if self._ptr(x) % 16 or self._ptr(w) % 16:
            reasons.append("x or w is not 16-byte aligned")
        if needs_64bit_index(x.shape, w.shape, y_shape):
            reasons.append("a tensor has more than 2^31 - 1 elements")
        name = self._tensor_op_name("conv2d_fprop_tensor_op", prefix, "Tile64", vec, out_ct)
        if name is None:
            reasons.append(f"no tensor-core instantiation for {prefix} with {out_ct} output")
        res, has_res = self._tensor_op_residual(residual, y_shape, dt, out)
        if reasons:
            note("CUDA-core conv2d_fprop (fp32) instead of tensor cores: " + "; ".join(reasons))
            widen = (lambda v: bf16_bits_to_float32(self.xp, v)) if dt == np.uint16 else (lambda v: v.astype(np.float32))
            y = self.conv2d_fprop(widen(x), widen(w), stride, padding, dilation, groups,
                                  None if bias is None else self._c(bias).astype(np.float32),
                                  None if has_res else activation, alpha)
            if has_res:   # the same order as the fused epilogue: act(conv + bias + residual)
                y = y + _widen(self.xp, res)
                if ACTIVATIONS[activation]:
                    y = self._act_fprop(activation, y, alpha)
            return _narrow(self.xp, y, out)
        note("tensor-core implicit GEMM: groups == 1, C % 8 == 0, K a multiple of 16 bytes, pointers aligned")
        y = self.xp.empty(y_shape, out)
        if y.size == 0:
            return y
        n, p, q, _ = y_shape
        bm, bn, threads = TENSOR_OP_TILES["Tile64"]
        bias_arr = self._c(bias).astype(np.float32, copy=False) if bias is not None else self.xp.zeros((1,), np.float32)
        self._launch(name, self._tile_grid(ceil_div(n * p * q, bm), ceil_div(k, bn)), (threads,),
                     (pb, x, w, y, bias_arr, np.int32(bias is not None), np.int32(ACTIVATIONS[activation]),
                      np.float32(alpha), res, np.int32(has_res)))
        return y

    def _tensor_op_grad_reasons(self, groups, c, k, vec, arrays, shapes):
        """Why a conv2d dgrad/wgrad cannot run on tensor cores ([] when it can)."""
        reasons = []
        if groups != 1:
            reasons.append(f"groups={groups} (the tensor-core kernels take groups == 1)")
        if c % vec:
            reasons.append(f"C={c} is not a multiple of {vec}")
        if k % vec:
            reasons.append(f"K={k} is not a multiple of {vec}")
        if any(self._ptr(a) % 16 for a in arrays):
            reasons.append("an operand is not 16-byte aligned")
        if needs_64bit_index(*shapes):
            reasons.append("a tensor has more than 2^31 - 1 elements")
        return reasons

    def conv2d_dgrad_tensor_op(self, dy, w, x_shape, stride, padding, dilation, groups, out_dtype=None):
        """conv2d_dgrad (dx = dy * w^T, NHWC, filter (R, S, C, K)) on tensor cores with fp32 accumulation
        when groups == 1, C and K multiples of 16 bytes of the operand type, dy and w 16-byte aligned;
        otherwise the CUDA-core fp32 dgrad on operands widened to float32 (same values). dy and w: float32
        (tf32), float16 or uint16 (bfloat16 bits); dx float32 (default) or the operand dtype. Stride > 1 runs
        conv2d_dgrad_strided_tensor_op: the sh*sw stride phases in one launch, each over only its own taps."""
        dy, w = self._c(dy), self._c(w)
        dt, out = _tensor_op_types(dy.dtype, out_dtype)
        if w.dtype != dt:
            raise TypeError(f"dy is {dt} but w is {w.dtype}")
        pb, y_shape = conv2d_problem(x_shape, w.shape, stride, padding, dilation, groups)
        if tuple(dy.shape) != tuple(y_shape):
            raise ValueError(f"dy has shape {tuple(dy.shape)}, expected {y_shape}")
        ct, prefix = TENSOR_OP_TYPES[dt]
        out_ct = "float" if out == np.float32 else ct
        n, h, wd, c = (int(v) for v in x_shape)
        k = int(w.shape[3])
        vec = 16 // dt.itemsize
        reasons = self._tensor_op_grad_reasons(groups, c, k, vec, (dy, w), (x_shape, w.shape, y_shape))
        name = self._tensor_op_name("conv2d_dgrad_tensor_op", prefix, "Tile64", vec, out_ct)
        if name is None:
            reasons.append(f"no tensor-core dgrad instantiation for {prefix} with {out_ct} output")
        if reasons:
            note("CUDA-core conv2d_dgrad (fp32) instead of tensor cores: " + "; ".join(reasons))
            dx = self.conv2d_dgrad(_widen(self.xp, dy), _widen(self.xp, w), x_shape, stride, padding, dilation, groups)
            return _narrow(self.xp, dx, out)
        sh, sw = (int(v) for v in stride)
        phases = sh * sw
        if phases > 1:   # csrc/conv/conv2d_dgrad_phase.h: each stride phase a dense GEMM over its own taps
            name = self._tensor_op_name("conv2d_dgrad_strided_tensor_op", prefix, "Tile64", vec, out_ct)
            note(f"tensor-core implicit GEMM dgrad, stride-phase decomposition: {sh}x{sw} = {phases} phases in one "
                 "launch, each over only the taps that reach it (no taps masked by the stride)")
        else:
            note("tensor-core implicit GEMM dgrad: groups == 1, C and K multiples of 16 bytes, pointers aligned")
        dx = self.xp.empty((n, h, wd, c), out)
        if dx.size == 0:
            return dx
        if dy.size == 0 or w.size == 0:
            dx[...] = 0
            return dx
        bm, bn, threads = TENSOR_OP_TILES["Tile64"]
        rows = n * ceil_div(h, sh) * ceil_div(wd, sw)   # phase (0, 0), the largest
        self._launch(name, self._tile_grid(ceil_div(rows, bm), ceil_div(c, bn), phases), (threads,), (pb, dy, w, dx))
        return dx

    def conv2d_wgrad_tensor_op(self, x, dy, w_shape, stride, padding, dilation, groups):
        """conv2d_wgrad (dw = x^T * dy, NHWC, dw (R, S, C, K) float32) on tensor cores with fp32 accumulation
        and a deterministic split-k (fixed-order reduction) when groups == 1, C and K multiples of 16 bytes
        of the operand type, x and dy 16-byte aligned; otherwise the CUDA-core fp32 wgrad on operands widened
        to float32 (same values). x and dy: float32 (tf32), float16 or uint16 (bfloat16 bits).
        Knob: force_splits."""
        x, dy = self._c(x), self._c(dy)
        dt, _ = _tensor_op_types(x.dtype, None)
        if dy.dtype != dt:
            raise TypeError(f"x is {dt} but dy is {dy.dtype}")
        pb, y_shape = conv2d_problem(x.shape, w_shape, stride, padding, dilation, groups)
        if tuple(dy.shape) != tuple(y_shape):
            raise ValueError(f"dy has shape {tuple(dy.shape)}, expected {y_shape}")
        _, prefix = TENSOR_OP_TYPES[dt]
        r, s, cg, k = (int(v) for v in w_shape)
        c = int(x.shape[3])
        vec = 16 // dt.itemsize
        reasons = self._tensor_op_grad_reasons(groups, c, k, vec, (x, dy), (x.shape, w_shape, y_shape))
        name = self._tensor_op_name("conv2d_wgrad_tensor_op", prefix, "Tile64", vec)
        if name is None:
            reasons.append(f"no tensor-core wgrad instantiation for {prefix}")
        if reasons:
            note("CUDA-core conv2d_wgrad (fp32) instead of tensor cores: " + "; ".join(reasons))
            return self.conv2d_wgrad(_widen(self.xp, x), _widen(self.xp, dy), w_shape, stride, padding, dilation,
                                     groups)
        n, p, q, _ = y_shape
        kdim, rows = n * p * q, r * s * c
        dw = self.xp.empty((r, s, c, k), np.float32)
        if dw.size == 0:
            return dw
        if kdim == 0:
            dw[...] = 0
            return dw
        bk = 16 if dt == np.float32 else 32   # Tile64's BK: 64 bytes of each row (gemm_tensor_op_sm80.h)
        splits, k_per_split = tensor_op_splits(rows, k, kdim, "Tile64", bk, getattr(self, "force_splits", None))
        note(f"tensor-core implicit GEMM wgrad: {rows} x {k} x {kdim}, {splits} split(s) of {k_per_split}, "
             "summed in a fixed order")
        out = dw if splits == 1 else self.xp.empty((splits, rows, k), np.float32)
        bm, bn, threads = TENSOR_OP_TILES["Tile64"]
        self._launch(name, self._tile_grid(ceil_div(rows, bm), ceil_div(k, bn), splits), (threads,),
                     (pb, x, dy, out, np.int32(k_per_split)))
        if splits > 1:
            self._run1d("fc::split_k_reduce<float>", dw.size, (out, dw, np.int32(splits), np.int64(dw.size)))
        return dw
