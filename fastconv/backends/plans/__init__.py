"""Launch plans: which kernel instantiation, grid, block and arguments each op uses, shared by the
native, jit and emulated backends. kernel_ops.py holds KernelOps (conv, pool, GEMM, elementwise,
losses, optimizers); fused.py and tensor_op.py are its mixins for the fused and tensor-core kernels;
common.py the constants and host-side choices mirrored in C++."""
from .common import *  # noqa: F401,F403
from .fused import FusedPlans, check_fusable_pool, fused_kernel_names  # noqa: F401
from .kernel_ops import EXTRA_API, FUSED_API, REFERENCE_API, KernelOps, all_kernel_names  # noqa: F401
from .tensor_op import (TENSOR_OP_CONV_CHANNELS, TENSOR_OP_TILES, TENSOR_OP_TYPES, TensorOpPlans,  # noqa: F401
                        bf16_bits_to_float32, float32_to_bf16_bits, tensor_op_kernel_names)
