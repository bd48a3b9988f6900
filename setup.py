"""Build script: extensions compiled from csrc/.

The emulator extension (CPU SIMT emulator running csrc/ kernels) is added by the emulator work;
the native CUDA extension fastconv._C is built only when nvcc is found (optional).
"""
from setuptools import setup

ext_modules = []

setup(ext_modules=ext_modules)
