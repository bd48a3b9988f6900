"""Models: Sequential, functional Model, saving, and a small zoo."""
from .graph import Model, Sequential
from .loading import load_model
from .saving import save_model
from .zoo import ZOO, lenet5, resnet18, resnet50, seed_model, vgg_small

__all__ = ["Model", "Sequential", "load_model", "save_model", "ZOO", "seed_model", "lenet5", "vgg_small",
           "resnet18", "resnet50"]
