"""Table 1's configurations as plain data, without torch: the model builds its layers from them
(vggrepro.model), and validate estimates from them what a run needs in memory at the least, so
that it refuses a crop and batch that cannot fit before either engine deletes an output, instead
of a stage dying of an allocation failure (or the kernel's OOM killer) later.

The estimates are lower bounds, so nothing that fits is refused:
- training: the weights, their gradients and SGD's momentum (fp32), and one copy of every conv,
  LRN and pool layer's output for each image of a micro-batch (autograd keeps them for the
  backward pass; bf16 under autocast). The backward pass's own buffers come on top.
- dense evaluation: the weights, and the input and output of the widest layer for one square
  image at the run's largest Q and its flip (real images are wider than square).
"""

from __future__ import annotations

# Table 1. Each inner list is one block ending in a 2x2/2 max-pool. An int is a 3x3 conv
# with that many output channels, "c1-N" a 1x1 conv (config C), "LRN" AlexNet's local
# response normalisation (config A-LRN).
TABLE1: dict[str, list[list[int | str]]] = {
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "A-LRN": [[64, "LRN"], [128], [256, 256], [512, 512], [512, 512]],
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "C": [[64, 64], [128, 128], [256, 256, "c1-256"], [512, 512, "c1-512"], [512, 512, "c1-512"]],
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "E": [
        [64, 64],
        [128, 128],
        [256, 256, 256, 256],
        [512, 512, 512, 512],
        [512, 512, 512, 512],
    ],
}
CONFIGS = tuple(TABLE1)
DOWNSAMPLING = 32  # five 2x2/2 max-pools


def conv_width(channels: int, width: float) -> int:
    """A conv layer's channels at model.width (1.0: Table 1's)."""
    return max(1, round(channels * width))


GIB = 2**30


def layer_outputs(config: str, width: float, side: int) -> list[int]:
    """Elements of every conv, LRN and pool layer's output, in order, for one side x side image."""
    out, channels = [], 3
    for b, block in enumerate(TABLE1[config]):
        s = side >> b  # each 2x2/2 pool halves the side (rounding down, as max_pool2d does)
        for item in block:
            if item != "LRN":
                channels = conv_width(int(item[3:]) if isinstance(item, str) else item, width)
            out.append(channels * s * s)
        out.append(channels * (s // 2) ** 2)
    return out


def count_params(config: str, width: float, head_width: int, crop: int, classes: int) -> int:
    """Weights and biases of the net (vggrepro.model.count_params counts the built module)."""
    total, channels = 0, 3
    for block in TABLE1[config]:
        for item in block:
            if item == "LRN":
                continue
            kernel, out = (1, int(item[3:])) if isinstance(item, str) else (3, item)
            out = conv_width(out, width)
            total += channels * out * kernel * kernel + out
            channels = out
    k = crop // DOWNSAMPLING  # FC1 is a k x k convolution over the last pool's output
    return total + (channels * k * k + 1) * head_width + (head_width + 1) * head_width + (head_width + 1) * classes


def _bytes_a_value(precision: str) -> int:
    """Bytes an activation takes: 2 in bf16; auto may resolve to bf16, and these are lower bounds."""
    return 4 if precision == "fp32" else 2


def training_bytes(config: str, *, width: float, head_width: int, crop: int, classes: int, micro_batch: int,
                   precision: str) -> int:
    per_value = _bytes_a_value(precision)
    weights = count_params(config, width, head_width, crop, classes) * 4 * 3  # weights, gradients, momentum
    return weights + micro_batch * sum(layer_outputs(config, width, crop)) * per_value


def dense_bytes(config: str, *, width: float, head_width: int, crop: int, classes: int, q: int,
                precision: str) -> int:
    per_value = _bytes_a_value(precision)
    layers = [3 * q * q] + layer_outputs(config, width, q)
    widest = max(a + b for a, b in zip(layers, layers[1:]))  # a layer's input and output live together
    return count_params(config, width, head_width, crop, classes) * 4 + 2 * widest * per_value
