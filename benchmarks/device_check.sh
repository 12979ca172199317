#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md in one run on a lent H200, sized to finish in under 6 minutes. Installs
# nothing: it uses the machine's own torch/torchvision/timm and what benchmarks/device_prepare.sh put in
# .devcarry/ (run that here first; the device tool carries it). Prints, and writes under $OUT (or
# benchmarks/results):
#   1. throughput: resnet50 (random init: weight values do not change GPU speed) on suite=imagenet_c, 2,000
#      images (200 samples x 10), default runtime (bf16 autocast, channels_last, device cache, batch probed),
#      against its forward-only limit; the full ImageNet-C time extrapolated from the measured rate;
#   2. the same for efficientnet_lite0 (real weights), 1,000 images, and resnet50 with runtime.compile=true;
#   3. memory: device and host peaks on 1,000 vs 5,000 images;
#   4. the GPU corruption-speed table (ours on the GPU; the reference is CPU-only and is skipped here).
# Usage (device tool): carry [".devcarry"], command "bash benchmarks/device_check.sh", timeout_s 480.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
[[ "$PY" == */* ]] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute: the steps run in benchmarks/
OUT=${OUT:-$PWD/benchmarks/results}
SCALE=${SCALE:-1}  # SCALE=0.1: a quick try of the script itself (e.g. on a CPU)
mkdir -p "$OUT"
export PYTHONPATH="$PWD/.devcarry/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export RBIN_SAMPLES=${RBIN_SAMPLES:-$PWD/.devcarry/samples}
[ -d "$RBIN_SAMPLES" ] || { echo "error: no sample images at $RBIN_SAMPLES: run bash benchmarks/device_prepare.sh here first, then carry .devcarry"; exit 2; }
n() { $PY -c "print(max(1, round($1 * $SCALE)))"; }
step() { echo; echo "=== $1 ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, torchvision, hydra; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(), 'cpus', __import__('os').cpu_count())" || exit 2

cd benchmarks
step "throughput: resnet50, suite=imagenet_c, default runtime"
timeout 200 $PY throughput.py --model torchvision --set model.name=resnet50 model.random_init=true \
  --images "$(n 200)" --repeat "$(n 10)" --out "$OUT"
step "throughput: efficientnet_lite0 (real weights), suite=imagenet_c"
timeout 70 $PY throughput.py --images "$(n 200)" --repeat "$(n 5)" --out "$OUT"
step "throughput: resnet50 with runtime.compile=true"
timeout 200 $PY throughput.py --model torchvision --set model.name=resnet50 model.random_init=true \
  runtime.compile=true --images "$(n 200)" --repeat "$(n 5)" --out "$OUT"
step "memory: 1,000 vs 5,000 images (resnet50, one cell)"
timeout 90 $PY memory.py --model torchvision --sizes "$(n 1000)" "$(n 5000)" --set model.name=resnet50 \
  model.random_init=true "suite.corruptions=[contrast]" "suite.severities=[3]" --out "$OUT"
step "corruption speed on the GPU (ours; batch of 256 crops)"
timeout 90 $PY corruption_speed.py --device cuda --images 256 --no-reference --out "$OUT"
step "done"
ls -la "$OUT"
