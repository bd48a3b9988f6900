"""FLOP and byte counts of every benchmarked op, the ceilings, and the roofline arithmetic.

Counts first (METHOD: "two numbers first"):
    conv2d (fprop, dgrad and wgrad alike)  FLOPs = 2 * N*P*Q * K * R*S * C/groups
                                           bytes = (x + w + y element counts) * dtype size
    max-pool (forward)                     FLOPs = N*P*Q*C * (R*S - 1) comparisons
                                           bytes = (x + y) * size  (+ 1 byte per output for the argmax)
    GEMM C[M,N] = A[M,K] @ B[K,N]          FLOPs = 2*M*N*K,  bytes = (M*K + K*N + M*N) * size
Bytes are the minimum traffic: every input read once, every output written once.

Roofline: floor = max(flops / peak, bytes / bandwidth); the larger term names the bound;
% of roofline = floor / measured time * 100 (100% means the measured time is the floor).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Storage size in bytes per element of each dtype mode. tf32 is float32 storage with tensor-core math.
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2}
DTYPES = tuple(DTYPE_BYTES)


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}") from None


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


# ---- counts ------------------------------------------------------------------------------------
def conv2d_flops(n, p, q, k, r, s, c, groups=1) -> int:
    """Multiply-adds of a direct convolution, 2 FLOPs each; the same for fprop, dgrad and wgrad."""
    if c % groups or k % groups:
        raise ValueError(f"groups={groups} must divide C={c} and K={k}")
    return 2 * n * p * q * k * r * s * (c // groups)


def conv2d_bytes(x_shape, w_shape, y_shape, dtype: str) -> int:
    """x (N,H,W,C) + w (R,S,C/g,K) + y (N,P,Q,K), each once. dgrad reads dy, w and writes dx;
    wgrad reads x, dy and writes dw: the same three tensors, so the same count."""
    return (_prod(x_shape) + _prod(w_shape) + _prod(y_shape)) * dtype_bytes(dtype)


def maxpool_flops(n, p, q, c, r, s) -> int:
    """R*S - 1 comparisons pick the maximum of R*S values (not matrix-unit work)."""
    return n * p * q * c * (r * s - 1)


def maxpool_bytes(x_shape, y_shape, dtype: str, argmax_bytes: int = 1) -> int:
    """Input read once, output written once, plus the argmax (argmax_bytes per output, 0 if not stored).
    fastconv stores a 1-byte window offset for windows up to 255 taps."""
    outputs = _prod(y_shape)
    return (_prod(x_shape) + outputs) * dtype_bytes(dtype) + outputs * argmax_bytes


def gemm_flops(m, n, k) -> int:
    return 2 * m * n * k


def gemm_bytes(m, n, k, dtype: str) -> int:
    return (m * k + k * n + m * n) * dtype_bytes(dtype)


# ---- ceilings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ceilings:
    """Peak rates: flops per second per dtype mode, and memory bandwidth in bytes per second
    (a copy counts bytes read + bytes written)."""
    peak_flops: dict
    bandwidth: float
    source: str = "measured"       # 'measured' or 'datasheet: <card>'

    def peak(self, key: str) -> float:
        if key not in self.peak_flops or not self.peak_flops[key]:
            raise KeyError(f"no {key} peak in {self.source} ceilings (have {sorted(self.peak_flops)})")
        return float(self.peak_flops[key])

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Ceilings":
        return cls(peak_flops=dict(d["peak_flops"]), bandwidth=float(d["bandwidth"]), source=d.get("source", "json"))


TERA = 1e12
# Dense (no sparsity) datasheet rates. fp32 is the CUDA-core rate; tf32/fp16/bf16 the tensor-core rates.
DATASHEETS = {
    "H100 SXM": Ceilings({"fp32": 67 * TERA, "tf32": 495 * TERA, "fp16": 989 * TERA, "bf16": 989 * TERA},
                         3.35e12, "datasheet: H100 SXM"),
    "H100 PCIe": Ceilings({"fp32": 51 * TERA, "tf32": 378 * TERA, "fp16": 756 * TERA, "bf16": 756 * TERA},
                          2.0e12, "datasheet: H100 PCIe"),
    "H200": Ceilings({"fp32": 67 * TERA, "tf32": 495 * TERA, "fp16": 989 * TERA, "bf16": 989 * TERA},
                     4.8e12, "datasheet: H200"),
}
# L2 sizes used to size the input rotation when the device does not report its own.
L2_BYTES = {"H100": 50 * 2**20, "H200": 60 * 2**20}


def datasheet_for(gpu_name: str | None) -> Ceilings | None:
    """The datasheet ceilings of a card from its reported name, or None for an unknown card."""
    if not gpu_name:
        return None
    name = gpu_name.upper()
    if "H200" in name:
        return DATASHEETS["H200"]
    if "H100" in name:
        return DATASHEETS["H100 PCIe"] if "PCIE" in name else DATASHEETS["H100 SXM"]
    return None


# ---- the roofline ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Roofline:
    flops: int
    bytes: int
    compute_s: float        # flops / peak
    memory_s: float         # bytes / bandwidth
    floor_s: float          # max of the two
    bound: str              # 'compute' or 'memory'
    intensity: float        # flops per byte

    def pct(self, measured_s: float | None) -> float | None:
        """Percent of roofline: floor / measured * 100."""
        return percent_of_roofline(self.floor_s, measured_s)


def roofline(flops: int, nbytes: int, peak_flops: float, bandwidth: float) -> Roofline:
    if peak_flops <= 0 or bandwidth <= 0:
        raise ValueError(f"peak and bandwidth must be positive, got {peak_flops}, {bandwidth}")
    compute_s = flops / peak_flops
    memory_s = nbytes / bandwidth
    bound = "compute" if compute_s >= memory_s else "memory"
    return Roofline(int(flops), int(nbytes), compute_s, memory_s, max(compute_s, memory_s), bound,
                    flops / nbytes if nbytes else math.inf)


def percent_of_roofline(floor_s: float, measured_s: float | None) -> float | None:
    if measured_s is None or not measured_s > 0:
        return None
    return 100.0 * floor_s / measured_s


def peak_key(op: str, dtype: str) -> str:
    """Which peak bounds an op's arithmetic: the dtype's matrix rate for convs and GEMMs; max-pool's
    comparisons run on the CUDA cores, so it uses the fp32 rate (it is memory-bound in practice)."""
    if op == "maxpool":
        return "fp32"
    return dtype


def achieved(flops: int, nbytes: int, seconds: float | None) -> tuple[float | None, float | None]:
    """(flop/s, byte/s) achieved at a measured time."""
    if seconds is None or not seconds > 0:
        return None, None
    return flops / seconds, nbytes / seconds


def geomean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))
