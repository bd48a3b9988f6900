"""A small model zoo: the seed model, LeNet-5, a VGG-style net, ResNet-18/50 (32x32 or 224x224)."""
from __future__ import annotations

from ..layers import (Activation, Add, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                      GlobalAveragePooling2D, Input, MaxPooling2D)
from .graph import Model, Sequential


def seed_model(input_shape=(28, 28, 1), num_classes=10) -> Sequential:
    """The model our users start with: Conv2D(64, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense softmax."""
    return Sequential([Conv2D(64, (3, 3), activation="relu", input_shape=input_shape), MaxPooling2D((2, 2)),
                       Flatten(), Dense(num_classes, activation="softmax")], name="seed_model")


def lenet5(input_shape=(28, 28, 1), num_classes=10) -> Sequential:
    return Sequential([
        Conv2D(6, 5, padding="same", activation="tanh", input_shape=input_shape), AveragePooling2D(2),
        Conv2D(16, 5, activation="tanh"), AveragePooling2D(2), Flatten(),
        Dense(120, activation="tanh"), Dense(84, activation="tanh"), Dense(num_classes, activation="softmax"),
    ], name="lenet5")


def vgg_small(input_shape=(32, 32, 3), num_classes=10, widths=(32, 64, 128), dropout=0.3) -> Sequential:
    """VGG-style: blocks of two 3x3 convs + BN + ReLU, then 2x2 max-pool."""
    layers = []
    for i, w in enumerate(widths):
        for j in range(2):
            kwargs = {"input_shape": input_shape} if i == j == 0 else {}
            layers += [Conv2D(w, 3, padding="same", use_bias=False, kernel_initializer="he_normal", **kwargs),
                       BatchNormalization(), Activation("relu")]
        layers.append(MaxPooling2D(2))
    layers += [Flatten(), Dropout(dropout), Dense(num_classes, activation="softmax")]
    return Sequential(layers, name="vgg_small")


def _conv_bn(x, filters, kernel, stride=1, relu=True):
    x = Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
    x = BatchNormalization()(x)
    return Activation("relu")(x) if relu else x


def _basic_block(x, filters, stride):
    shortcut = x
    y = _conv_bn(x, filters, 3, stride)
    y = _conv_bn(y, filters, 3, 1, relu=False)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, relu=False)
    return Activation("relu")(Add()([y, shortcut]))


def _bottleneck(x, filters, stride):
    shortcut = x
    y = _conv_bn(x, filters, 1, 1)
    y = _conv_bn(y, filters, 3, stride)
    y = _conv_bn(y, filters * 4, 1, 1, relu=False)
    if stride != 1 or x.shape[-1] != filters * 4:
        shortcut = _conv_bn(x, filters * 4, 1, stride, relu=False)
    return Activation("relu")(Add()([y, shortcut]))


def _resnet(block, stage_blocks, input_shape, num_classes, name, width=64):
    inputs = Input(input_shape)
    if input_shape[0] >= 128:  # ImageNet stem: 7x7/2 conv then 3x3/2 max-pool
        x = _conv_bn(inputs, width, 7, 2)
        x = MaxPooling2D(3, strides=2, padding="same")(x)
    else:  # CIFAR stem: one 3x3 conv, no pooling
        x = _conv_bn(inputs, width, 3, 1)
    for stage, blocks in enumerate(stage_blocks):
        for i in range(blocks):
            x = block(x, width * 2 ** stage, 2 if (i == 0 and stage > 0) else 1)
    x = GlobalAveragePooling2D()(x)
    outputs = Dense(num_classes, activation="softmax")(x)
    return Model(inputs, outputs, name=name)


def resnet18(input_shape=(32, 32, 3), num_classes=10, width=64) -> Model:
    return _resnet(_basic_block, (2, 2, 2, 2), input_shape, num_classes, "resnet18", width)


def resnet50(input_shape=(224, 224, 3), num_classes=1000, width=64) -> Model:
    return _resnet(_bottleneck, (3, 4, 6, 3), input_shape, num_classes, "resnet50", width)


ZOO = {"seed": seed_model, "lenet5": lenet5, "vgg_small": vgg_small, "resnet18": resnet18, "resnet50": resnet50}
