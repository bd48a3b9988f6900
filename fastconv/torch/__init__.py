"""fastconv.torch: PyTorch drop-ins that run fastconv's ops.

    import fastconv.torch as fct
    report = fct.convert(model)           # nn.Conv2d / nn.MaxPool2d / nn.Linear -> fastconv, in place
    print(report)                         # what was swapped, what was not and why

or build with fct.Conv2d / fct.MaxPool2d / fct.Linear and fct.functional.conv2d / max_pool2d /
linear directly (same arguments and state dicts as torch's). The ops are torch.library custom ops
(torch.ops.fastconv.*) with fake implementations and autograd formulas, so autograd, DDP and
torch.compile(fullgraph=True) work. CUDA tensors run fastconv's CUDA kernels (native or jit backend)
on torch's current stream and caching allocator, with no silent fallback to torch's kernels. CPU
tensors run the NumPy reference, or with set_kernel_backend('emulated') (env
FASTCONV_TORCH_BACKEND=emulated) the same kernels and launch plans in the CPU emulator, through the
very bridge code CUDA uses. See docs/torch.md.
"""
from . import functional
from ._cuda import kernels_status as cuda_kernels_status
from ._kernels import kernel_backend, set_kernel_backend
from ._ops import OPS
from .convert import ConversionReport, convert
from .modules import Conv2d, Linear, MaxPool2d

__all__ = ["Conv2d", "MaxPool2d", "Linear", "functional", "convert", "ConversionReport", "OPS",
           "cuda_kernels_status", "set_kernel_backend", "kernel_backend"]
