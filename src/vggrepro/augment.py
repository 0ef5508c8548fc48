"""Training batches: the paper's rescale, random crop and random flip (Sec. 3.1).

Each training image is isotropically rescaled so its smallest side is S (fixed, or drawn
per image from [S_min, S_max] for scale jittering), a crop is taken at a random position
and flipped at random. The mean RGB is subtracted (Sec. 2.1), and the result divided by `std`
(all ones for the paper's mean subtraction alone). The paper's PCA colour shift is not applied
yet.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from vggrepro.data.images import rescale


class TrainBatches:
    def __init__(
        self,
        *,
        images: list[torch.Tensor],
        labels: torch.Tensor,
        scale: tuple[int, int],
        crop: int,
        mean: list[float],
        std: list[float],
        generator: torch.Generator,
    ) -> None:
        self.labels = labels
        self.scale = scale
        self.crop = crop
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.g = generator
        # A fixed S rescales every image the same way each epoch: do it once.
        fixed = scale[0] == scale[1]
        self.images = [rescale(im, scale[0]) for im in images] if fixed else images
        self.fixed = fixed

    def __len__(self) -> int:
        return len(self.images)

    def _sample(self, i: int) -> torch.Tensor:
        img = self.images[i]
        if not self.fixed:  # Sec. 3.1: S drawn uniformly from [S_min, S_max] for each image
            s = int(torch.randint(self.scale[0], self.scale[1] + 1, (1,), generator=self.g))
            img = rescale(img, s)
        h, w = img.shape[1:]
        top = int(torch.randint(0, h - self.crop + 1, (1,), generator=self.g))
        left = int(torch.randint(0, w - self.crop + 1, (1,), generator=self.g))
        patch = img[:, top : top + self.crop, left : left + self.crop]
        if bool(torch.rand(1, generator=self.g) < 0.5):
            patch = patch.flip(-1)
        return patch

    def epoch(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.images), generator=self.g)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = (torch.stack([self._sample(i) for i in idx.tolist()]).float() - self.mean) / self.std
            yield x.contiguous(memory_format=torch.channels_last), self.labels[idx]
