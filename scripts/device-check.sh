#!/usr/bin/env bash
# The checks the open issues ask of a GPU machine, in one run of a few minutes (see README,
# "On a GPU machine"):
#   1. a short training and evaluation on the embedded set with train.device: cuda (A, then
#      E from A, resumed once after a SIGTERM), bf16, checking the stage's outputs;
#   2. bench train at the paper's geometry (VGG-19, crop 224, full width): our loop fed by the
#      loader, the step alone, a plain torchvision-style fp32 loop, MFU against a measured peak;
#   3. bench loader: the input pipeline at 224 on every core, on real ILSVRC-2012 photographs
#      copied COPIES times into an ImageFolder tree (VGG-19 needs ~3,000 images a second);
#   4. bench eval at the paper's geometry: dense against 150-crop evaluation of VGG-19 at
#      Q in {256, 384, 512}, images a second and their ratio, a pixel and a FLOP (on the CPU
#      dense does x1.12 the FLOPs an input pixel at x0.83 the FLOP rate: x0.74 a pixel);
#   5. bench train at the findings profile's geometry (params/findings.yaml: crop 64, width 1/8,
#      batch 32), A and E: the rates that give its time on one GPU (README, "The paper's
#      findings over seeds"), in its own workspace.
#
#   bash scripts/device-check.sh PHOTOS_DIR [COPIES]
#
# Needs python3 with torch and torchvision; the package runs from src/ (no install). Prints
# what it measured; writes it under $OUT when that is set. On a CPU-only machine step 1 runs
# with train.device: cpu (CHECK_DEVICE=cpu) so the script itself can be tried anywhere;
# SECTIONS="section_1 section_2" runs only those.
set -uo pipefail  # no -e: a failing section is reported and the next one still runs
photos=${1:?usage: device-check.sh PHOTOS_DIR [COPIES]}
copies=${2:-10}
dev=${CHECK_DEVICE:-cuda}
batch=${CHECK_BATCH:-128}
cores=$(nproc)
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-$(mktemp -d)}
work=$(mktemp -d)
vgg() { python3 -m vggrepro "$@"; }

python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
echo "cores: $cores, device: $dev"

section_1() {
echo "== 1. train and evaluate on the embedded set, train.device: $dev"
mkdir -p "$work/embedded" && cd "$work/embedded" || return 1
cat > params.yaml <<YAML
seed: 0
threads: 4
data:
  source: embedded
  root: data/embedded
  workers: $(( cores > 4 ? cores - 4 : 1 ))
  embedded: {classes: 20, train_per_class: 100, val_per_class: 20, min_side: 72, max_side: 160}
model: {width: 0.25, head_width: 512, normalise: mean_std, dropout: 0.5}
geometry: {crop: 64}
train: {batch_size: 64, max_epochs: 3, lr: 0.01, device: $dev, precision: bf16, checkpoint_every: 5}
augment: {flip: true, colour_shift: 0.1}
evaluate: {flip: true}
runs:
  A_256: {config: A, scale: 256, init: kaiming}
  E_256: {config: E, scale: 256, init: A_256, max_epochs: 4}
YAML
vgg validate --write-knobs || return 1
vgg prepare | tee "$out/prepare.json" || return 1
vgg mean_rgb | tee "$out/mean_rgb.json" || return 1
vgg train --run A_256 | tee "$out/train_A.txt" || return 1
# E: stopped by SIGTERM once mid-run (its first resume point comes after 5 steps), then resumed.
python3 -m vggrepro train --run E_256 > "$out/train_E_part1.txt" 2> "$out/train_E_stop.txt" &  # not through vgg(): the signal must reach python
pid=$!
point=$(python3 -c "from vggrepro import paths; print(paths.resume_point('train_E_256'))")
while [ ! -e "$point" ] && kill -0 $pid 2>/dev/null; do sleep 0.02; done
kill -TERM $pid 2>/dev/null
wait $pid
echo "E_256 after SIGTERM: exit $? | $(cat "$out/train_E_stop.txt")"
vgg train --run E_256 | tee "$out/train_E.txt" || return 1
for r in A_256 E_256; do vgg evaluate --run $r | tee -a "$out/evaluate.txt" || return 1; done
python3 - <<'PY'
import json, torch
from vggrepro import paths
for run in ("A_256", "E_256"):
    ck = torch.load(paths.model(run), map_location="cpu", weights_only=True)
    finite = all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())
    log = json.load(open(paths.train_log(run)))
    print(run, "compute:", ck["compute"], "| epochs", ck["epochs"], "| weights finite:", finite,
          "| loss by epoch", [round(x["loss"], 3) for x in log])
PY
}

section_2() {
echo "== 2. bench train at the paper's geometry (VGG-19, 224, full width), batch $batch"
cd "$work/embedded" || return 1
vgg bench train --geometry paper --config E --batch "$batch" --repeat 3 2>&1 | tee "$out/bench-train.txt"
}

section_4() {
echo "== 4. bench eval at the paper's geometry (VGG-19, 224, full width), Q 256, 384, 512"
cd "$work/embedded" || return 1
vgg bench eval --geometry paper --config E --images "${EVAL_IMAGES:-64}" --repeat 3 2>&1 | tee "$out/bench-eval.txt"
}

section_5() {
echo "== 5. bench train at the findings profile's geometry (params/findings.yaml as it is), A and E"
mkdir -p "$work/findings" && cd "$work/findings" || return 1
cp "$here/params/findings.yaml" params.yaml
vgg prepare > "$out/findings-prepare.json" || return 1
vgg mean_rgb > /dev/null || return 1
for config in A E; do
    vgg bench train --config $config --repeat 3 2>&1 | tee "$out/bench-train-findings-$config.txt"
done
}

section_3() {
echo "== 3. bench loader on the photographs at 224, $cores workers"
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
mkdir -p "$work/ws" && cd "$work/ws" || return 1
cat > params.yaml <<YAML
seed: 0
threads: $cores
data: {source: imagefolder, root: $work/photos, val_fraction: 0.1, workers: $cores}
model: {width: 0.125, head_width: 256, normalise: mean, dropout: 0.5}
geometry: {crop: 224}
train: {batch_size: 64, max_epochs: 1, lr: 0.01, device: cpu}
augment: {flip: true, colour_shift: 0.1}
evaluate: {flip: true}
runs:
  A_256: {config: A, scale: 256, init: kaiming}
  A_jit: {config: A, scale: [256, 512], init: A_256}
YAML
vgg prepare > "$out/photos-prepare.json"
vgg mean_rgb > /dev/null
vgg bench loader --repeat 3 2>&1 | tee "$out/bench-loader.txt"
}

for section in ${SECTIONS:-section_1 section_5 section_2 section_4 section_3}; do
    start=$(date +%s)
    $section || echo "== $section FAILED (exit $?)"
    echo "== $section: $(( $(date +%s) - start )) s"
done
