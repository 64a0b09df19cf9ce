#!/usr/bin/env bash
# An untrained YOLOv8n ONNX, exported from ultralytics' own yolov8n.yaml, as the timing baseline of
# `lkd bench detect` (the issue's reference architecture). For timing only: its weights are random,
# and ultralytics is NOT a dependency of lkd_perception: it is installed into a throwaway folder
# (with the torchvision it insists on), used once, and deleted.
#   scripts/yolov8n_timing_baseline.sh [OUT_DIR]   (default runs/baselines) -> yolov8n_320.onnx, yolov8n_480.onnx
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(realpath -m "${1:-$ROOT/runs/baselines}")"
PY="$ROOT/.venv/bin/python"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
# torchvision minor = torch minor + 15 (0.28 goes with 2.13)
TV="0.$(( $(echo "$TORCH" | cut -d. -f2) + 15 )).*"
"$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$TMP/site" ultralytics "torchvision==$TV" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
mkdir -p "$OUT"
cd "$TMP"
for size in 320 480; do
  PYTHONPATH="$TMP/site" YOLO_OFFLINE=1 "$PY" - "$size" <<'PY'
import sys
from ultralytics import YOLO
size = int(sys.argv[1])
path = YOLO("yolov8n.yaml").export(format="onnx", imgsz=size, opset=17, simplify=False)
print(path)
PY
  mv "$TMP/yolov8n.onnx" "$OUT/yolov8n_${size}.onnx"
done
ls -l "$OUT"/yolov8n_*.onnx
