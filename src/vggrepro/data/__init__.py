"""Datasets: the embedded generator, every ILSVRC-2012 layout and ImageFolder, bad files, decoding,
the input pipeline. Imports params, paths, paper and runtime/; never a stage or engine/."""

import warnings

# torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they remain the
# fastest decoder measured here, and the notice would repeat in every stage's log.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")
