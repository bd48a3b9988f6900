"""Launch plans: which kernel instantiation, grid, block and arguments each op uses, shared by the
native, jit and emulated backends. One file per op (conv2d.py, gemm.py, pool.py, norm.py, loss.py,
activation.py, dropout.py, optim.py, images.py), plain functions over launcher.py's Launcher;
kernel_ops.py binds them into KernelOps; common.py holds the constants and host-side choices mirrored in C++."""
from .kernel_ops import EXTRA_API, FUSED_API, OPS, REFERENCE_API, KernelOps, all_kernel_names  # noqa: F401
from .launcher import Launcher  # noqa: F401
from .tensor_op import tensor_op_kernel_names  # noqa: F401
