"""Your own image data: folders and tar shards streamed as uint8 batches, augmented like torchvision.

    from fastconv.data.images import ImageFolder, ImageLoader, RandomResizedCrop, CenterCrop
    train = ImageLoader(ImageFolder("train/"), RandomResizedCrop(224), batch_size=256, workers=8, seed=0)
    model.fit(train, epochs=90)      # uint8 batches, normalised and cast on the device
"""
from .decode import DecodeError, decoder_name
from .folder import IMAGE_EXTENSIONS, ImageFolder
from .loader import IMAGENET_MEAN, IMAGENET_STD, ImageLoader, LoaderError, SkippedImageWarning
from .normalize import normalize
from .shards import TarShards, expand_pattern
from .transforms import CenterCrop, RandomResizedCrop

__all__ = ["ImageFolder", "TarShards", "ImageLoader", "RandomResizedCrop", "CenterCrop", "normalize",
           "DecodeError", "LoaderError", "SkippedImageWarning", "decoder_name", "expand_pattern",
           "IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD"]
