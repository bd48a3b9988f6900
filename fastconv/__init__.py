"""fastconv: a CNN engine whose hot path is its own CUDA C++ kernels.

    import fastconv as fc
    from fastconv.layers import Conv2D, MaxPooling2D, Flatten, Dense
    model = fc.Sequential([Conv2D(64, (3, 3), activation='relu'), MaxPooling2D((2, 2)),
                           Flatten(), Dense(10, activation='softmax')])
"""
__version__ = "0.1.0"

from . import callbacks, functional, initializers, layers, losses, metrics, optimizers, precision, schedules
from .determinism import deterministic
from .backends.device import cuda_available, default_device, using_device
from .explain import explain
from .layers import Input
from .models import Model, Sequential, load_model
from .models.fusion import set_fusion
from .precision import get_precision, set_precision
from .random import set_seed
from .tensor import Tensor, no_grad, tensor

__all__ = ["Tensor", "tensor", "no_grad", "explain", "deterministic", "using_device", "set_fusion", "set_precision", "get_precision", "Sequential", "Model", "Input", "load_model", "set_seed",
           "default_device", "cuda_available", "layers", "functional", "optimizers", "losses", "metrics",
           "callbacks", "initializers", "schedules", "__version__"]
