#!/usr/bin/env bash
# The checks the open issues ask of a GPU machine, in one run (see README, "On a GPU machine").
# Today: the training input pipeline at the paper's geometry (224 crops, S=256 and S in
# [256;512]) fed by every core, on the real ILSVRC-2012 photographs copied 10x into an
# ImageFolder tree (VGG-19 on one modern GPU needs ~3,000 decoded, augmented images a second).
#
#   bash scripts/device-check.sh PHOTOS_DIR [COPIES]
#
# Needs python3 with torch and torchvision; the package runs from src/ (no install). Prints
# what it measured; writes it under $OUT when that is set.
set -euo pipefail
photos=${1:?usage: device-check.sh PHOTOS_DIR [COPIES]}
copies=${2:-10}
cores=$(nproc)
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-$(mktemp -d)}
work=$(mktemp -d)

python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
echo "cores: $cores"

# An ImageFolder tree: <wnid>/<k>_<photo>, each photo `copies` times (throughput, not accuracy).
python3 - "$photos" "$work/photos" "$copies" <<'PY'
import shutil, sys
from pathlib import Path
src, dst, copies = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for photo in sorted(src.glob("*.JPEG")):
    folder = dst / photo.name.split("_")[0]
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        shutil.copyfile(photo, folder / f"{k}_{photo.name}")
PY

mkdir -p "$work/ws" && cd "$work/ws"
cat > params.yaml <<YAML
seed: 0
threads: $cores
data: {source: imagefolder, root: $work/photos, val_fraction: 0.1, workers: $cores}
model: {width: 0.125, head_width: 256, normalise: mean, dropout: 0.5}
geometry: {crop: 224}
train: {batch_size: 64, max_epochs: 1, lr: 0.01, momentum: 0.9, weight_decay: 0.0005}
augment: {flip: true, colour_shift: 0.1}
evaluate: {flip: true}
runs:
  A_256: {config: A, scale: 256, init: kaiming}
  A_jit: {config: A, scale: [256, 512], init: A_256}
YAML
python3 -m vggrepro prepare | tee "$out/prepare.json"
python3 -m vggrepro mean_rgb | tee "$out/mean_rgb.json"
python3 -m vggrepro bench loader --repeat 3 2>&1 | tee "$out/bench-loader.txt"
