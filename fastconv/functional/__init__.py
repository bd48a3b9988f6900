"""fastconv.functional: differentiable ops on Tensors, each forward beside its backward."""
from .activations import get_activation, leaky_relu, linear, relu, sigmoid, softmax, tanh
from .batchnorm import batch_norm
from .conv2d import conv2d
from .dense import dense
from .dropout import dropout
from .elementwise import add, concatenate, mul, sum_all
from .fused import conv2d_bias_relu_maxpool
from .losses import cross_entropy, mean_squared_error, softmax_cross_entropy
from .pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from .shape import flatten, reshape

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "dense", "relu", "leaky_relu",
           "sigmoid", "tanh", "softmax", "linear", "get_activation", "dropout", "batch_norm",
           "softmax_cross_entropy", "cross_entropy", "mean_squared_error", "flatten", "reshape",
           "add", "mul", "sum_all", "concatenate", "conv2d_bias_relu_maxpool"]
