"""Op runners: how fastconv and each baseline run one benchmark case.

Protocol (one object per implementation, any op):
    runner.name, runner.role ('fastconv' or 'baseline')
    runner.available(case) -> (bool, reason)        never raises; the reason is printed when False
    runner.setup(case, sets) -> [Prepared, ...]     one per variant (e.g. cuDNN NCHW and channels_last)
`sets` is the input rotation: a list of dicts name -> array in the canonical layout (NHWC activations,
(R, S, C/g, K) filters, row-major GEMM operands), NumPy on the CPU and torch CUDA tensors on the GPU,
the same values for every runner so their outputs can be compared. Prepared.fn(i) runs the op on
set i and returns its output; Prepared.canonical(out) turns that output into the canonical layout
(NumPy on the CPU, torch on the GPU; used once per case, outside the timing, for the cross-check).

fastconv on the GPU goes through `fastconv.backends.backend_for("cuda")` (native, else jit), with the
reference's op names and signatures; without one the runner says why and the baseline is reported alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

OP_FUNCS = {"conv2d_fprop": "conv2d_fprop", "conv2d_dgrad": "conv2d_dgrad", "conv2d_wgrad": "conv2d_wgrad",
            "maxpool": "max_pool2d_fprop", "gemm": "dense_fprop"}
TORCH_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# Cross-check tolerance on ||fastconv - baseline|| / ||baseline||: both sides carry their own rounding.
CHECK_TOL = {"fp32": 1e-3, "tf32": 5e-3, "fp16": 1e-2, "bf16": 4e-2}


@dataclass
class Prepared:
    label: str
    fn: Callable[[int], Any]
    canonical: Callable[[Any], Any]
    info: dict = field(default_factory=dict)


def torch_dtype(dtype: str):
    import torch
    return getattr(torch, TORCH_DTYPES[dtype])


# ---- PyTorch math mode -------------------------------------------------------------------------
def set_math_mode(dtype: str):
    """Match PyTorch's float32 matmul/conv math to the dtype mode: tf32 -> tensor-core TF32, fp32 ->
    strict IEEE fp32 (cuDNN defaults to TF32 for fp32 convs). Returns a function that restores."""
    import torch
    tf32 = dtype == "tf32"
    restore = []
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        old = (matmul.fp32_precision, conv.fp32_precision)
        matmul.fp32_precision = conv.fp32_precision = "tf32" if tf32 else "ieee"
        restore.append(lambda: (setattr(matmul, "fp32_precision", old[0]), setattr(conv, "fp32_precision", old[1])))
    else:   # older PyTorch
        old = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        restore.append(lambda: (setattr(matmul, "allow_tf32", old[0]),
                                setattr(torch.backends.cudnn, "allow_tf32", old[1])))
    return lambda: [r() for r in restore]


# ---- inputs ------------------------------------------------------------------------------------
def make_inputs(case, n_sets: int, device: str, seed: int = 0) -> list:
    """n_sets dicts of random inputs (standard normal, never zeros) in the canonical layout."""
    shapes = case.inputs
    if device == "cpu":
        if case.dtype != "fp32":
            raise ValueError("the CPU mode runs fp32 only")
        rng = np.random.default_rng(seed)
        return [{k: rng.standard_normal(s, dtype=np.float32) for k, s in shapes.items()} for _ in range(n_sets)]
    import torch
    gen = torch.Generator(device="cuda")
    gen.manual_seed(seed)
    dt = torch_dtype(case.dtype)
    return [{k: torch.randn(s, device="cuda", dtype=dt, generator=gen) for k, s in shapes.items()}
            for _ in range(n_sets)]


def as_canonical(a):
    """NumPy stays NumPy; torch stays torch; CuPy (fastconv's GPU arrays) becomes torch, zero-copy."""
    if isinstance(a, np.ndarray) or hasattr(a, "detach"):
        return a
    import torch
    return torch.from_dlpack(a)


def _host_numpy(a):
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach") and a.device.type == "cpu":
        return a.detach().float().numpy()
    return None


def rel_err(out, ref) -> float:
    """||out - ref|| / ||ref||, NaN if out has a non-finite value. Computed where the data lives
    (float64 NumPy on the CPU, float32 torch on the GPU: an 800M-element output stays on the card)."""
    out, ref = as_canonical(out), as_canonical(ref)
    if tuple(out.shape) != tuple(ref.shape):
        raise ValueError(f"shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}")
    o, r = _host_numpy(out), _host_numpy(ref)
    if o is not None and r is not None:
        out, ref = o.astype(np.float64, copy=False), r.astype(np.float64, copy=False)
        if not np.all(np.isfinite(out)):
            return float("nan")
        denom = float(np.linalg.norm(ref))
        return float(np.linalg.norm(out - ref)) / (denom if denom > 0 else 1.0)
    import torch
    out = torch.as_tensor(out).float()
    ref = torch.as_tensor(ref).float().to(out.device)
    if not bool(torch.isfinite(out).all()):
        return float("nan")
    denom = float(torch.linalg.vector_norm(ref))
    return float(torch.linalg.vector_norm(out - ref)) / (denom if denom > 0 else 1.0)


# ---- fastconv ----------------------------------------------------------------------------------
def _fastconv_call(mod, case):
    """The reference backend's signature for the case's op: fn(set) -> output."""
    g = case.geometry
    name = OP_FUNCS[case.op]

    def f(*a):   # looked up per call, so that `fastconv profile` can wrap the backend's functions
        return getattr(mod, name)(*a)
    if case.op == "conv2d_fprop":
        return lambda s: f(s["x"], s["w"], g["stride"], g["padding"], g["dilation"], g["groups"])
    if case.op == "conv2d_dgrad":
        return lambda s: f(s["dy"], s["w"], g["x"], g["stride"], g["padding"], g["dilation"], g["groups"])
    if case.op == "conv2d_wgrad":
        return lambda s: f(s["x"], s["dy"], g["w"], g["stride"], g["padding"], g["dilation"], g["groups"])
    if case.op == "maxpool":
        return lambda s: f(s["x"], g["pool"], g["stride"], g["padding"])[0]
    return lambda s: f(s["a"], s["b"])


class FastconvRunner:
    """fastconv's own op: the NumPy reference on the CPU, the native/jit backend on the GPU."""
    role = "fastconv"

    def __init__(self, device: str):
        self.device = device
        self.name = "fastconv"

    def _module(self):
        from ..backends import backend_for, backend_status
        if self.device == "cpu":
            return backend_for("cpu"), "reference"
        try:
            mod = backend_for("cuda")            # native, else jit; FASTCONV_BACKEND=jit forces one
            return mod, getattr(mod, "__name__", "gpu").rsplit(".", 1)[-1]
        except (RuntimeError, NotImplementedError) as exc:
            status = backend_status()
            why = "; ".join(f"{k}: {r}" for k, (ok, r) in status.items() if k != "reference" and not ok)
            raise RuntimeError(f"no fastconv GPU backend ({why or exc})") from None

    def available(self, case) -> tuple[bool, str]:
        try:
            mod, kind = self._module()
        except Exception as exc:
            return False, str(exc)
        if not hasattr(mod, OP_FUNCS[case.op]):
            return False, f"the fastconv {kind} backend has no {OP_FUNCS[case.op]}"
        if self.device == "cpu" and case.dtype != "fp32":
            return False, "the reference backend computes in float32/float64 only"
        if self.device == "gpu" and case.op == "gemm" and case.dtype in GEMM16:
            if not hasattr(mod, "gemm_wgmma"):
                return False, f"the fastconv {kind} backend has no gemm_wgmma"
            return True, kind
        if self.device == "gpu" and case.op in CONV16_FUNCS and case.dtype in GEMM16:
            if not hasattr(mod, CONV16_FUNCS[case.op]):
                return False, f"the fastconv {kind} backend has no {CONV16_FUNCS[case.op]}"
            return True, kind
        if self.device == "gpu" and case.dtype == "tf32":
            return False, "the generic adapter cannot ask the backend for TF32 math"
        return True, kind

    def setup(self, case, sets) -> list:
        mod, kind = self._module()
        call = _fastconv_call(mod, case)
        if self.device == "cpu":
            return [Prepared("reference", lambda i: call(sets[i]), as_canonical, {"backend": "reference"})]
        import cupy
        import torch
        canonical, view, info = as_canonical, cupy.from_dlpack, {}
        if case.op in CONV16_FUNCS and case.dtype in GEMM16:
            (call, canonical), view = _conv16_call(mod, case), _cupy_view
        if case.op == "gemm" and case.dtype in GEMM16:
            (call, canonical), view = _gemm16_call(mod, case.dtype), _cupy_view
            # B held K-major (N, K), as nn.Linear keeps a weight and the wgmma kernel reads it: transposed once
            # here, outside the timing (cuBLAS reads either layout at the same speed)
            sets = [dict(s, b=s["b"].t().contiguous()) for s in sets]
            info["b_layout"] = "nk (B stored (N, K) row-major, transposed once at setup)"
        csets = [{k: view(v) for k, v in s.items()} for s in sets]   # zero-copy views
        handle = torch.cuda.current_stream().cuda_stream
        stream = cupy.cuda.ExternalStream(handle) if handle else cupy.cuda.Stream.null

        def fn(i):
            with stream:   # launch on torch's current stream, which the CUDA events are recorded on
                return call(csets[i])
        try:
            kernels = _kernels_of(fn)
        except ValueError as exc:
            if not (case.op == "gemm" and case.dtype in GEMM16):
                raise
            # the mma.sync fallback lacks some 16-bit-output instantiations (narrow copies): fp32 out, said so
            call, canonical = _gemm16_call(mod, case.dtype, out16=False)
            info["out_dtype"] = f"float32 (16-bit output refused: {exc})"
            kernels = _kernels_of(fn)
        info.update(backend=getattr(mod, "__name__", kind), kernel=kernels)
        return [Prepared(kind, fn, canonical, info)]


# GEMMs in 16-bit formats run the plans' gemm_wgmma (the sm_90a wgmma kernel where it applies, else the
# mma.sync one): same operands and output dtype as torch.matmul, so the cuBLAS comparison is like for like.
GEMM16 = ("bf16", "fp16")


def _cupy_view(t):
    """A zero-copy CuPy view of a torch CUDA tensor; bfloat16 (which CuPy lacks) as its uint16 bits."""
    import cupy
    import torch
    if t.dtype == torch.bfloat16:
        return cupy.from_dlpack(t.view(torch.int16)).view(cupy.uint16)
    return cupy.from_dlpack(t)


def _gemm16_call(mod, dtype, out16=True):
    """fn(set) -> C and canonical(C) -> torch for a bf16 / fp16 GEMM through mod.gemm_wgmma, B given (N, K);
    C in the operand format like torch.matmul's (out16), else float32."""
    import cupy
    import torch
    out = (np.uint16 if dtype == "bf16" else np.float16) if out16 else np.float32

    def canonical(c):
        if dtype == "bf16" and out16:
            return torch.from_dlpack(c.view(cupy.int16)).view(torch.bfloat16)
        return torch.from_dlpack(c)
    return (lambda s: mod.gemm_wgmma(s["a"], s["b"], out_dtype=out, b_layout="nk")), canonical


# Convs in 16-bit formats run the tensor-core plans on the operands as they are (no float32 round trip) through
# conv2d_*_tensor_core (on sm_90 the wgmma GEMM or the sm_90a conv kernels where they apply, else mma.sync). fprop
# and dgrad write the operand format, as cuDNN does; wgrad writes float32.
CONV16_FUNCS = {"conv2d_fprop": "conv2d_fprop_tensor_core", "conv2d_dgrad": "conv2d_dgrad_tensor_core",
                "conv2d_wgrad": "conv2d_wgrad_tensor_core"}


def _conv16_call(mod, case):
    """fn(set) -> output and canonical(output) -> torch for a bf16 / fp16 conv through the tensor-core plans."""
    import cupy
    import torch
    g, out = case.geometry, (np.uint16 if case.dtype == "bf16" else np.float16)
    conv = (g["stride"], g["padding"], g["dilation"], g["groups"])
    fn = getattr(mod, CONV16_FUNCS[case.op])
    if case.op == "conv2d_fprop":
        call = lambda s: fn(s["x"], s["w"], *conv, out_dtype=out)   # noqa: E731
    elif case.op == "conv2d_dgrad":
        call = lambda s: fn(s["dy"], s["w"], g["x"], *conv, out_dtype=out)   # noqa: E731
    else:
        return (lambda s: fn(s["x"], s["dy"], g["w"], *conv)), torch.from_dlpack

    def canonical(y):
        if case.dtype == "bf16":
            return torch.from_dlpack(y.view(cupy.int16)).view(torch.bfloat16)
        return torch.from_dlpack(y)
    return call, canonical


def _kernels_of(fn) -> str:
    """The kernels one call of fn(0) launches, in order (fastconv.explain): the report's 'kernel' field,
    so a result says which kernel the plans picked (e.g. the wgmma GEMM or its mma.sync fallback)."""
    from ..explain import explain
    return ", ".join(dict.fromkeys(explain(fn, 0).kernels))


# ---- PyTorch baselines (cuDNN / cuBLAS on the GPU, PyTorch CPU kernels on the CPU) ---------------
def _sym_pad(padding):
    (t, b), (l, r) = padding
    return (t, l) if (t == b and l == r) else None


class TorchRunner:
    """F.conv2d / aten.convolution_backward (cuDNN, benchmark mode), F.max_pool2d, torch.matmul (cuBLAS).
    Convs and pools run in NCHW and in channels_last; the faster is the baseline."""
    role = "baseline"

    def __init__(self, device: str):
        self.device = device

    def label_for(self, op: str) -> str:
        if self.device == "cpu":
            return "torch-cpu"
        return {"gemm": "cublas", "maxpool": "torch-cuda"}.get(op, "cudnn")

    @property
    def name(self):
        return "torch-cpu" if self.device == "cpu" else "torch"

    def available(self, case) -> tuple[bool, str]:
        try:
            import torch
        except ImportError as exc:
            return False, f"PyTorch is not importable ({exc})"
        if self.device == "gpu" and case.op.startswith("conv2d") and not torch.backends.cudnn.is_available():
            return False, "cuDNN is not available to PyTorch"
        if case.op.startswith("conv2d") or case.op == "maxpool":
            if _sym_pad(case.geometry["padding"]) is None:
                return False, "asymmetric padding: PyTorch's conv/pool take symmetric padding only"
        return True, self.label_for(case.op)

    def setup(self, case, sets) -> list:
        import torch
        import torch.nn.functional as F
        if self.device == "gpu":
            torch.backends.cudnn.enabled = True
            torch.backends.cudnn.benchmark = True
        g = case.geometry
        lab = self.label_for(case.op)
        if case.op == "gemm":
            ts = [{k: _torch_from(v) for k, v in s.items()} for s in sets]
            return [Prepared(f"{lab}", lambda i: torch.matmul(ts[i]["a"], ts[i]["b"]), as_canonical,
                             {"layout": "rowmaj"})]
        pad = _sym_pad(g["padding"])
        out = []
        for fmt in ("channels_last", "nchw"):
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            act = lambda a: _torch_from(a).permute(0, 3, 1, 2).contiguous(memory_format=mf)     # NHWC -> NCHW
            flt = lambda w: _torch_from(w).permute(3, 2, 0, 1).contiguous(memory_format=mf)     # RSCK -> KCRS
            nhwc = lambda y: y.permute(0, 2, 3, 1)
            if case.op == "maxpool":
                xs = [act(s["x"]) for s in sets]
                fn = (lambda xs: lambda i: F.max_pool2d(xs[i], g["pool"], g["stride"], pad, return_indices=True)[0])(xs)
                out.append(Prepared(f"{lab} {fmt}", fn, nhwc,
                                    {"layout": _short(fmt), "indices": "int64 (return_indices=True)"}))
                continue
            conv = dict(stride=list(g["stride"]), padding=list(pad), dilation=list(g["dilation"]), groups=g["groups"])
            if case.op == "conv2d_fprop":
                xs = [act(s["x"]) for s in sets]
                ws = [flt(s["w"]) for s in sets]
                fn = (lambda xs, ws: lambda i: F.conv2d(xs[i], ws[i], None, **conv))(xs, ws)
                out.append(Prepared(f"{lab} {fmt}", fn, nhwc, {"layout": _short(fmt)}))
                continue
            cb = torch.ops.aten.convolution_backward.default
            n, h, w_, c = g["x"]
            r, s_, cg, k = g["w"]
            args = (conv["stride"], conv["padding"], conv["dilation"], False, [0, 0], conv["groups"])
            if case.op == "conv2d_dgrad":
                dys = [act(s["dy"]) for s in sets]
                ws = [flt(s["w"]) for s in sets]
                x_like = torch.empty((n, c, h, w_), dtype=dys[0].dtype, device=dys[0].device, memory_format=mf)
                fn = (lambda dys, ws, x_like:
                      lambda i: cb(dys[i], x_like, ws[i], None, *args, [True, False, False])[0])(dys, ws, x_like)
                out.append(Prepared(f"{lab} {fmt}", fn, nhwc, {"layout": _short(fmt)}))
            else:
                xs = [act(s["x"]) for s in sets]
                dys = [act(s["dy"]) for s in sets]
                w_like = torch.empty((k, cg, r, s_), dtype=xs[0].dtype, device=xs[0].device, memory_format=mf)
                fn = (lambda xs, dys, w_like:
                      lambda i: cb(dys[i], xs[i], w_like, None, *args, [False, True, False])[1])(xs, dys, w_like)
                out.append(Prepared(f"{lab} {fmt}", fn, lambda dw: dw.permute(2, 3, 1, 0), {"layout": _short(fmt)}))
        return out


def _short(fmt: str) -> str:
    return "nhwc" if fmt == "channels_last" else fmt


def _torch_from(a):
    import torch
    return torch.from_numpy(a) if isinstance(a, np.ndarray) else a


def baseline_runner(kind: str, device: str):
    """--baseline cudnn|cublas|torch -> the PyTorch runner (it picks cuDNN for convs, cuBLAS for GEMMs);
    none -> None."""
    if kind == "none":
        return None
    if kind not in ("cudnn", "cublas", "torch", "auto"):
        raise ValueError(f"--baseline must be cudnn, cublas, torch or none, got {kind!r}")
    return TorchRunner(device)
