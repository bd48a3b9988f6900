"""fastconv: a CNN engine whose hot path is its own CUDA C++ kernels."""
__version__ = "0.1.0"
