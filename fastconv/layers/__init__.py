"""Keras-style layers on NHWC tensors."""
from .base import Input, InputLayer, Layer, SymbolicTensor
from .conv import Conv2D
from .core import Activation, Dense, Dropout, Flatten, ReLU
from .merge import Add, Concatenate
from .normalization import BatchNormalization, SyncBatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D

LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Conv2D, Dense, Flatten, Dropout, Activation, ReLU, Add, Concatenate, BatchNormalization,
    MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, SyncBatchNormalization)}

__all__ = ["Layer", "Input", "InputLayer", "SymbolicTensor", *LAYER_CLASSES]
