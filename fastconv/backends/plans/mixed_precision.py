"""Routing of conv2d and dense under a tf32 / bf16 / fp16 precision policy (fastconv/precision.py) to the
tensor-core plans (tensor_op.py; for bf16 / fp16 dense, the sm_90a wgmma GEMM of hopper.py where it applies). A mixin of KernelOps (kernel_ops.py), whose conv2d_* / dense_* take
`precision=` and come here when it is a reduced format and the operands are float32.

Operands are cast to the compute format at each use (weights stay float32 masters), products are
accumulated in fp32 and outputs are float32: what the reference does (backends/reference/rounding.py).
Where no tensor-core kernel applies, the CUDA-core fp32 kernel runs on the operands rounded to the
compute format and widened back, so every path computes the same values (up to summation order) and
`fastconv.explain` says which ran and why. The casts are one-pass kernels of ours (csrc/ops/cast.h).
"""
from __future__ import annotations

import numpy as np

from ...explain import note
from .. import kernel_table
from .tensor_op import bf16_bits_to_float32

# precision -> (cast kernel, the operand dtype the tensor-core plans take; bf16 travels as uint16 raw bits)
CASTS = {"tf32": ("fc::round_tf32_kernel<float>", np.dtype(np.float32)),
         "fp16": ("fc::cast_fp32_kernel<__half>", np.dtype(np.float16)),
         "bf16": ("fc::cast_fp32_kernel<__nv_bfloat16>", np.dtype(np.uint16))}


def cast_kernel_names() -> list[str]:
    """The cast kernels (csrc/ops/cast.h); all_kernel_names() registers them. A view of
    fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(headers=("ops/cast.h",))


class MixedPrecisionPlans:
    # ---- casts -----------------------------------------------------------------------------------
    def _reduced(self, precision, *arrays) -> bool:
        """True when `precision` asks for a tensor-core format and every operand is float32."""
        if precision in (None, "fp32"):
            return False
        if precision not in CASTS:
            raise ValueError(f"precision must be one of ['fp32', 'tf32', 'bf16', 'fp16'], got {precision!r}")
        if any(a.dtype != np.float32 for a in arrays):
            note(f"precision {precision} ignored: it applies to float32 operands, these are "
                 f"{sorted({str(a.dtype) for a in arrays})}")
            return False
        return True

    def _to_compute(self, a, precision):
        """float32 a -> the tensor-core operand: tf32-rounded float32 (cvt.rna, as the tensor-core kernel
        does itself; the CUDA-core fallbacks need the rounded values too, and rounding a tf32 value again
        changes nothing), float16, or bfloat16 bits (uint16). One kernel launch."""
        a = self._c(a)
        kernel, dtype = CASTS[precision]
        out = self.xp.empty(a.shape, dtype)
        if a.size:
            self._run1d(kernel, a.size, (a, out, np.int64(a.size)))
        return out

    def _to_float32(self, a):
        """The float32 values of a compute operand or of a 16-bit output."""
        if a.dtype == np.uint16:
            return bf16_bits_to_float32(self.xp, self._c(a))
        return a.astype(np.float32, copy=False)

    # ---- conv2d ----------------------------------------------------------------------------------
    def _conv2d_fprop_reduced(self, x, w, stride, padding, dilation, groups, bias, activation, alpha, precision):
        note(f"precision {precision}: conv2d_fprop operands cast to {precision}, fp32 accumulation, fp32 output")
        y = self.conv2d_fprop_tensor_op(self._to_compute(x, precision), self._to_compute(w, precision), stride,
                                        padding, dilation, groups, bias, activation, alpha)
        return self._to_float32(y)

    def _conv2d_dgrad_reduced(self, dy, w, x_shape, stride, padding, dilation, groups, precision):
        note(f"precision {precision}: conv2d_dgrad on the tensor-core plan, fp32 accumulation")
        dyc, wc = self._to_compute(dy, precision), self._to_compute(w, precision)
        return self._to_float32(self.conv2d_dgrad_tensor_op(dyc, wc, x_shape, stride, padding, dilation, groups))

    def _conv2d_wgrad_reduced(self, x, dy, w_shape, stride, padding, dilation, groups, precision):
        note(f"precision {precision}: conv2d_wgrad on the tensor-core plan, fp32 accumulation")
        xc, dyc = self._to_compute(x, precision), self._to_compute(dy, precision)
        return self._to_float32(self.conv2d_wgrad_tensor_op(xc, dyc, w_shape, stride, padding, dilation, groups))

    # ---- dense -----------------------------------------------------------------------------------
    def _gemm_reduced(self, a, b, precision, bias=None, what="dense", b_layout="kn"):
        """a @ b (+ bias) for compute operands a (M, K), b (K, N), row-major; float32 out. b_layout='nk': b is
        given as (N, K) row-major (what the wgmma GEMM reads; the other paths transpose it)."""
        k, n = b.shape if b_layout == "kn" else b.shape[::-1]
        if b_layout == "nk" and not (a.dtype.itemsize == 2 and k > 0 and k % 8 == 0 and n % 2 == 0):
            b, b_layout = self._c(b.T), "kn"   # only gemm_wgmma (reached below only then) reads (N, K) directly
        if a.dtype.itemsize == 2 and (k % 2 or n % 2):
            note(f"{what}: CUDA-core GEMM (fp32) on {precision}-rounded operands: the 16-bit tensor-core GEMM "
                 f"needs even K and N (K={k}, N={n})")
            return self.gemm(self._to_float32(a), self._to_float32(b), bias=bias)
        if k == 0:
            note(f"{what}: K == 0, no products: the CUDA-core GEMM writes the zeros")
            return self.gemm(self._to_float32(a), self._to_float32(b), bias=bias)
        note(f"{what}: tensor-core GEMM in {precision}, fp32 accumulation, fp32 output")
        if a.dtype.itemsize == 2:   # bf16 / fp16: the sm_90a wgmma GEMM, which falls back to mma.sync (and says why)
            return self.gemm_wgmma(a, b, bias=bias, b_layout=b_layout)
        return self.gemm_tensor_op(a, b, bias=bias)

    def _dense_fprop_reduced(self, x, w, b, precision):
        return self._gemm_reduced(self._to_compute(x, precision), self._to_compute(w, precision), precision, b,
                                  "dense fprop")

    def _dense_bprop_reduced(self, dy, x, w, need_dx, precision):
        dyc = self._to_compute(dy, precision)
        dx = None
        if need_dx:   # dx = dy @ w^T: w (K_in, units) is w^T in the (N, K) layout the wgmma GEMM reads
            dx = self._gemm_reduced(dyc, self._to_compute(w, precision), precision, what="dense dgrad", b_layout="nk")
        dw = self._gemm_reduced(self._c(self._to_compute(x, precision).T), dyc, precision, what="dense wgrad")
        return dx, dw, self.bias_grad(dy)
