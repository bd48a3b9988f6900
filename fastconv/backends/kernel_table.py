"""The one table of kernel instantiations: every C++ kernel template the launch plans can choose, its
template parameters, the configurations we instantiate, the target it needs, the operand alignment the
native registry checks, and which configurations the emulator build registers.

scripts/gen_kernel_list.py writes every list in csrc/launch/ from this table (the native shards, the
sm_90a unit, the emulator's list); kernel_name() builds a launch name and refuses a configuration that
is not instantiated. Adding a configuration touches one entry here, the kernel file and its tests.

    kernel_name("conv2d_fprop_implicit_gemm", tile="TileSmall", vec=4, index="int", t="float")
    -> 'fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>'
"""
from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from typing import Callable

REAL = ("float", "double")          # the CUDA-core kernels' element types (plans/common.py CTYPES)
ARGMAX = ("uint8_t", "uint16_t", "uint32_t")
TILES = ("TileSmall", "TileMedium", "TileLarge")   # csrc/gemm/gemm_mainloop_simt.h
# (tile, vec, index, t) of the GEMM-shaped CUDA-core kernels: both vector widths of every tile with a
# 32-bit index, the 64-bit index path, and double.
GEMM_CONFIGS = (tuple((tile, vec, "int", "float") for tile in TILES for vec in (1, 4))
                + (("TileMedium", 1, "int64_t", "float"), ("TileMedium", 4, "int64_t", "float"),
                   ("TileSmall", 1, "int64_t", "double")))
# The subset the emulator build registers (tests/kernels force only these): both vector widths of the
# 32-bit tiles (the medium one is what the plans pick for ResNet-18's wgrad, `fastconv profile --emulated`),
# the 64-bit index path and double.
EMU_GEMM_CONFIGS = frozenset((("TileSmall", 1, "int", "float"), ("TileSmall", 4, "int", "float"),
                              ("TileMedium", 1, "int", "float"), ("TileMedium", 4, "int", "float"),
                              ("TileLarge", 1, "int", "float"), ("TileLarge", 4, "int", "float"),
                              ("TileMedium", 1, "int64_t", "float"), ("TileMedium", 4, "int64_t", "float"),
                              ("TileSmall", 1, "int64_t", "double")))
ARCHS = ("any", "sm80", "sm90a")
SM90_CONV_TILES = ((128, 128), (128, 256), (64, 128), (64, 64))   # (BM, BN) of the sm_90a conv fprop
# fc::WgmmaTile<BN, STAGES, BM = 128>: the table leaves the default out, a demangler spells it
_WGMMA_TILE_DEFAULT = (re.compile(r"(WgmmaTile<\d+, ?\d+), ?128>"), re.compile(r"(WgmmaTile<\d+, ?\d+)>"))


def table_spelling(demangled: str) -> str:
    """A demangled template-id as the table spells it (WgmmaTile's default BM left out)."""
    return _WGMMA_TILE_DEFAULT[0].sub(r"\1>", demangled)


def demangled_spelling(name: str) -> str:
    """A table template-id as a demangler spells it (WgmmaTile's default BM written out)."""
    return _WGMMA_TILE_DEFAULT[1].sub(r"\1, 128>", name)


@dataclass(frozen=True)
class Family:
    """One kernel template. `template` formats a configuration into its C++ template-id; `align` gives
    the bytes each operand pointer must be aligned to (0: no check); `emulate` picks the configurations
    the emulator registers (None: all); `heavy` GEMM-shaped kernels are spread first over the shards."""
    name: str
    header: str                       # the csrc/ file that defines it
    params: tuple[str, ...]
    configs: tuple[tuple, ...]
    template: str
    arch: str = "any"                 # any target, sm_80 and newer (mma.sync), or sm_90a machine code only
    align: Callable[[dict], int] = lambda c: 0
    emulate: Callable[[dict], bool] | None = None
    heavy: bool = False
    defaults: tuple[tuple[str, object], ...] = ()   # trailing C++ template arguments with defaults: (param, default)

    def render(self, config: tuple) -> str:
        spelled = {p: _cpp(v) for p, v in zip(self.params, config)}
        for p, default in self.defaults:   # "{p}" renders ", value", or nothing at the default
            spelled[p] = "" if config[self.params.index(p)] == default else ", " + spelled[p]
        return self.template.format(**spelled)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """Every configuration's template-id, rendered once (the plans ask for the views per launch)."""
        return tuple(self.render(c) for c in self.configs)


def _cpp(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _plain(name, header, params, configs, **kw) -> Family:
    """fc::name<params in order>, the common spelling."""
    return Family(name, header, tuple(params), tuple(configs),
                  f"fc::{name}<" + ", ".join("{%s}" % p for p in params) + ">", **kw)


def _vec16(c):
    return 16 if c["vec"] == 4 else 0   # kVec = 4 reads the first two arrays as 16-byte vectors


def _tensor_op_align(c):
    return c["vec"] * (4 if c["traits"].startswith("TensorOpTf32") else 2)   # one cp.async of kVec elements


def _emu_gemm(c):
    return (c["tile"], c["vec"], c["index"], c["t"]) in EMU_GEMM_CONFIGS


def _gemm_shaped(op, header):
    return Family(op, header, ("tile", "vec", "index", "t"), GEMM_CONFIGS,
                  f"fc::{op}<fc::{{tile}}, {{vec}}, {{index}}, {{t}}>", align=_vec16, emulate=_emu_gemm, heavy=True)


def _tensor_op(op, header, configs, with_out=True):
    params = ("traits", "vec", "out") if with_out else ("traits", "vec")
    template = f"fc::{op}<fc::{{traits}}, {{vec}}" + (", {out}>" if with_out else ">")
    return Family(op, header, params, tuple(configs), template, arch="sm80", align=_tensor_op_align)


def _product(*axes):
    return tuple(itertools.product(*axes))


# the tensor-core convs (fprop, dgrad, strided dgrad): float or operand-type output
_TENSOR_OP_CONV = (("TensorOpTf32Tile64", 4, "float"), ("TensorOpF16Tile64", 8, "float"),
                    ("TensorOpF16Tile64", 8, "__half"), ("TensorOpBf16Tile64", 8, "float"),
                    ("TensorOpBf16Tile64", 8, "__nv_bfloat16"))
_ELEMENTWISE = {   # templates over the element type only, by header
    "gemm/split_k_reduce.h": ("split_k_reduce",),
    "pool/avg_pool2d.h": ("avg_pool2d_fprop", "avg_pool2d_bprop", "global_avg_pool_fprop", "global_avg_pool_bprop"),
    "ops/reduce.h": ("column_reduce_partial", "column_finalize", "reduce_to_scalar"),
    "ops/elementwise.h": ("activation_fprop_kernel", "activation_bprop_kernel", "dropout_mask_kernel",
                          "multiply_kernel"),
    "ops/softmax.h": ("softmax_fprop_strided", "softmax_bprop_strided", "mse_bprop_kernel"),
    "norm/batchnorm.h": ("batchnorm_apply_kernel", "batchnorm_infer_kernel", "batchnorm_dx_kernel"),
    "ops/optimizer.h": ("sgd_update_multi", "adam_update_multi"),
    "conv/conv2d_depthwise_simt.h": ("conv2d_fprop_depthwise", "conv2d_dgrad_depthwise", "conv2d_wgrad_depthwise"),
    "norm/batchnorm_relu.h": ("batchnorm_relu_apply_kernel", "batchnorm_relu_infer_kernel",
                              "batchnorm_relu_dparams_partial", "batchnorm_relu_dx_kernel"),
}
# softmax over contiguous rows: V = 4 (16-byte vectors) for float32 only
_ROWS = (("float", 1), ("float", 4), ("double", 1))
_LABELED_ROWS = tuple((t, label, v) for t, v in _ROWS for label in ("int64_t", t))

FAMILIES: dict[str, Family] = {f.name: f for f in [
    # conv2d and the dense GEMM on the CUDA-core main loop
    _gemm_shaped("conv2d_fprop_implicit_gemm", "conv/conv2d_fprop_simt.h"),
    _gemm_shaped("conv2d_dgrad_implicit_gemm", "conv/conv2d_dgrad_simt.h"),
    _gemm_shaped("conv2d_wgrad_implicit_gemm", "conv/conv2d_wgrad_simt.h"),
    _gemm_shaped("conv2d_dgrad_strided_implicit_gemm", "conv/conv2d_dgrad_simt.h"),
    Family("gemm_bias_act", "gemm/gemm_simt.h", ("tile", "vec", "index", "t", "trans_a", "trans_b"),
           tuple(g + ab for g in GEMM_CONFIGS for ab in _product((False, True), (False, True))),
           "fc::gemm_bias_act<fc::{tile}, {vec}, {index}, {t}, {trans_a}, {trans_b}>",
           align=_vec16, emulate=_emu_gemm, heavy=True),
    # conv + bias + ReLU + max-pool; 3x3/2 has no TileLarge: its 128 x 128 conv patch would not fit
    # static shared memory (csrc/conv/conv2d_bias_relu_maxpool3x3.h)
    Family("conv2d_bias_relu_maxpool2x2_fprop", "conv/conv2d_bias_relu_maxpool.h", ("tile", "vec", "index", "t"),
           GEMM_CONFIGS, "fc::conv2d_bias_relu_maxpool2x2_fprop<fc::{tile}, {vec}, {index}, {t}>"),
    Family("conv2d_bias_relu_maxpool3x3s2_fprop", "conv/conv2d_bias_relu_maxpool3x3.h", ("tile", "vec", "index", "t"),
           tuple(c for c in GEMM_CONFIGS if c[0] != "TileLarge"),
           "fc::conv2d_bias_relu_maxpool3x3s2_fprop<fc::{tile}, {vec}, {index}, {t}>"),
    _plain("relu_maxpool2x2_bprop", "conv/conv2d_bias_relu_maxpool.h", ("t",), _product(REAL)),
    _plain("relu_maxpool_bprop", "conv/conv2d_bias_relu_maxpool3x3.h", ("t", "arg"), _product(REAL, ("uint8_t",))),
    _plain("max_pool2d_fprop", "pool/max_pool2d.h", ("t", "arg"), _product(REAL, ARGMAX)),
    _plain("max_pool2d_bprop", "pool/max_pool2d.h", ("t", "arg"), _product(REAL, ARGMAX)),
    *[_plain(k, header, ("t",), _product(REAL)) for header, ks in _ELEMENTWISE.items() for k in ks],
    *[_plain(f"softmax_{op}_rows", "ops/softmax.h", ("t", "vec"), _ROWS,
             align=lambda c: 16 if c["vec"] == 4 else 0) for op in ("fprop", "bprop")],
    *[_plain(k, "ops/softmax.h", ("t", "label", "vec"), _LABELED_ROWS, align=lambda c: 16 if c["vec"] == 4 else 0)
      for k in ("softmax_xent_fprop_rows", "softmax_xent_bprop_rows", "cross_entropy_fprop_rows")],
    _plain("cross_entropy_bprop_kernel", "ops/softmax.h", ("t", "label"),
           tuple((t, label) for t in REAL for label in ("int64_t", t))),
    _plain("set_step_scalars", "ops/optimizer.h", ("t",), (("double",),)),
    _plain("round_tf32_kernel", "ops/cast.h", ("t",), (("float",),)),
    _plain("cast_fp32_kernel", "ops/cast.h", ("t",), (("__half",), ("__nv_bfloat16",))),
    _plain("normalize_uint8_kernel", "ops/normalize.h", ("t",), (("float",), ("__nv_bfloat16",))),
    # sm_80+ tensor cores: mma.sync + ldmatrix + cp.async
    _tensor_op("gemm_tensor_op", "gemm/gemm_tensor_op_sm80.h",
               (("TensorOpTf32Tile64", 4, "float"), ("TensorOpTf32Tile64", 1, "float"),
                ("TensorOpF16Tile64", 8, "float"), ("TensorOpF16Tile64", 8, "__half"), ("TensorOpF16Tile64", 2, "float"),
                ("TensorOpBf16Tile64", 8, "float"), ("TensorOpBf16Tile64", 8, "__nv_bfloat16"),
                ("TensorOpBf16Tile64", 2, "float"),
                ("TensorOpF16Tile128", 8, "float"), ("TensorOpBf16Tile128", 8, "__nv_bfloat16"))),
    _tensor_op("conv2d_fprop_tensor_op", "conv/conv2d_fprop_tensor_op_sm80.h", _TENSOR_OP_CONV),
    _tensor_op("conv2d_dgrad_tensor_op", "conv/conv2d_dgrad_tensor_op_sm80.h", _TENSOR_OP_CONV),
    _tensor_op("conv2d_wgrad_tensor_op", "conv/conv2d_wgrad_tensor_op_sm80.h",
               (("TensorOpTf32Tile64", 4), ("TensorOpF16Tile64", 8), ("TensorOpBf16Tile64", 8)), with_out=False),
    _tensor_op("conv2d_dgrad_strided_tensor_op", "conv/conv2d_dgrad_tensor_op_sm80.h", _TENSOR_OP_CONV),
    # conv + bias + ReLU + 2x2/2 max-pool on tensor cores: float output (a precision policy's fp32 activations) or
    # the operand type
    _tensor_op("conv2d_bias_relu_maxpool2x2_tensor_op", "conv/conv2d_bias_relu_maxpool_tensor_op_sm80.h",
               tuple(c for c in _TENSOR_OP_CONV if c[0] != "TensorOpTf32Tile64")),
    # sm_90a: wgmma + TMA (a TMA tensor's global address must be 16-byte aligned)
    Family("gemm_wgmma", "gemm/gemm_wgmma_sm90.h", ("bn", "stages", "t", "out"),
           tuple((bn, 4, t, out) for bn in (128, 256) for t in ("__nv_bfloat16", "__half") for out in ("float", t)),
           "fc::gemm_wgmma<fc::WgmmaTile<{bn}, {stages}>, {t}, {out}>", arch="sm90a", align=lambda c: 16),
    # implicit-GEMM conv fprop, a TMA box of NHWC per filter tap; tiles (BM x BN) 128x128, 128x256 (m64n256,
    # setmaxnreg; bf16 only), 64x128 and 64x64 (one consumer warpgroup; plans/conv2d_sm90.py choose_tile)
    Family("conv2d_fprop_wgmma_sm90", "conv/conv2d_fprop_wgmma_sm90.h", ("bn", "stages", "bm", "t", "out"),
           tuple((bn, 4, bm, t, out) for bm, bn in SM90_CONV_TILES for t in ("__nv_bfloat16", "__half")
                 if bn <= 128 or t == "__nv_bfloat16" for out in ("float", t)),
           "fc::conv2d_fprop_wgmma_sm90<fc::WgmmaTile<{bn}, {stages}{bm}>, {t}, {out}>", arch="sm90a",
           align=lambda c: 16, defaults=(("bm", 128),)),
    # implicit-GEMM conv wgrad per tap, both operands MN-major (the fprop's pixel boxes), fp32 split partials
    Family("conv2d_wgrad_wgmma_sm90", "conv/conv2d_wgrad_wgmma_sm90.h", ("stages", "t"),
           ((4, "__nv_bfloat16"), (4, "__half")), "fc::conv2d_wgrad_wgmma_sm90<fc::WgradWgmmaTile<{stages}>, {t}>",
           arch="sm90a", align=lambda c: 16),
]}


class NotInstantiated(ValueError):
    """A configuration of a known family that the table does not list."""


# Asked per launch: a hit takes 0.3-0.6 us, the checks below 2-7 us (a 2-core CPU); failures are not cached.
@functools.lru_cache(maxsize=None, typed=True)
def kernel_name(family: str, **params) -> str:
    """The C++ template-id of one instantiated configuration; ValueError for a family or configuration
    the table does not list (the native registry and the emulator would not have it)."""
    fam = FAMILIES.get(family)
    if fam is None:
        raise ValueError(f"kernel family {family!r} is not in the kernel table (fastconv/backends/kernel_table.py); "
                         f"known: {', '.join(sorted(FAMILIES))}")
    if set(params) != set(fam.params):
        raise ValueError(f"{family} takes the parameters {', '.join(fam.params)}; got {', '.join(sorted(params)) or 'none'}")
    config = tuple(params[p] for p in fam.params)
    try:   # render the table's own values: trans_a=1 or vec=np.int64(4) spell as trans_a=True, vec=4 do
        config = fam.configs[fam.configs.index(config)]
    except ValueError:
        listed = "; ".join(", ".join(f"{p}={v!r}" for p, v in zip(fam.params, c)) for c in fam.configs)
        raise NotInstantiated(f"{family} is not instantiated for "
                              f"{', '.join(f'{p}={v!r}' for p, v in zip(fam.params, config))}; "
                              f"the table lists: {listed}") from None
    return fam.render(config)


@dataclass(frozen=True)
class Instance:
    """One row of the table, flattened: what the generated lists write."""
    family: Family
    config: dict
    name: str

    @property
    def align(self) -> int:
        return self.family.align(self.config)

    @property
    def emulated(self) -> bool:
        return self.family.emulate is None or self.family.emulate(self.config)


def instances(archs=ARCHS) -> list[Instance]:
    """Every instantiation of the families for the given targets, in table order."""
    _check_archs(archs)
    return [Instance(f, dict(zip(f.params, c)), n)
            for f in FAMILIES.values() if f.arch in archs for c, n in zip(f.configs, f.names)]


def _check_archs(archs):
    unknown = set(archs) - set(ARCHS)
    if unknown:
        raise ValueError(f"archs must be among {ARCHS}, got {sorted(unknown)}")


def kernel_names(archs=ARCHS, headers=None) -> list[str]:
    """The template-ids of every instantiation for `archs`, optionally only those defined in `headers`."""
    _check_archs(archs)
    return [n for f in FAMILIES.values() if f.arch in archs and (headers is None or f.header in headers) for n in f.names]
