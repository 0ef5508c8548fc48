"""Datasets: embedded generator, ILSVRC-2012 layouts, ImageFolder, bad files, decoding, the loader,
the dataset stamp and the embedded folder's owner. Imports params, paths and runtime/ only."""

import warnings

# torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they remain the
# fastest decoder measured here, and the notice would repeat in every stage's log.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")
