#!/usr/bin/env bash
# The TensorRT checks, for a machine with an NVIDIA GPU (they cannot run on the CPU machines the
# test suite runs on). Sets up .venv-gpu with the 'gpu' extra (onnxruntime-gpu, tensorrt,
# cuda-python; never plain onnxruntime beside it), then, from the committed shapes model:
#   1. exports it to ONNX, converts it to FP16 and calibrates INT8;
#   2. builds fp32/fp16/int8 engines for the paper pyramid (both orientations);
#   3. validates each engine directory against the fp32 ONNX model in ONNX Runtime;
#   4. evaluates each with 'overfeat eval' and times it with 'overfeat bench';
#   5. runs the tests marked 'gpu';
# and prints one table. Everything is written under out/gpu/ (cleared first).
#
#   bash scripts/gpu_check.sh            # IMAGES=40 by default: test images per split
#   CUDA_MAJOR=13 bash scripts/gpu_check.sh   # cuda-python to match TensorRT's CUDA (default 12)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-gpu
out=out/gpu
images=${IMAGES:-40}
cuda_major=${CUDA_MAJOR:-12}
model=models/shapes-accurate-w12.safetensors

command -v nvidia-smi > /dev/null || { echo "gpu_check: no nvidia-smi here; this script needs an NVIDIA GPU" >&2; exit 2; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --progress-bar off --constraint constraints.txt -e ".[export,gpu,images,dev]" \
    "cuda-python>=$cuda_major.0,<$((cuda_major + 1))"  # the same CUDA major as TensorRT's wheels
export PATH="$PWD/$venv/bin:$PATH"

rm -rf "$out"
mkdir -p "$out"
overfeat datasets shapes --out "$out/data/single" --split test --count "$images" --seed 7 --kind single
overfeat datasets shapes --out "$out/data/multi" --split test --count "$images" --seed 7 --kind multi
overfeat export --checkpoint "$model" --output "$out/model.fp32.onnx" --quiet
overfeat convert --precision fp16 --model "$out/model.fp32.onnx" --output "$out/model.fp16.onnx" --check shapes:test:20 --quiet
code=0  # INT8 of the shapes model may fail its accuracy gate (see docs/benchmarks.md); build it all the same
overfeat calibrate --model "$out/model.fp32.onnx" --images shapes:val:64 --method minmax --output "$out/model.int8.onnx" \
    --check shapes:test:50 --quiet || code=$?
if [ "$code" -eq 1 ]; then
    overfeat calibrate --model "$out/model.fp32.onnx" --images shapes:val:64 --method minmax --output "$out/model.int8.onnx" --no-check --quiet
elif [ "$code" -ne 0 ]; then
    exit "$code"
fi

status=0
for precision in fp32 fp16 int8; do
    engines="$out/engines-$precision"
    start=$(date +%s)
    overfeat build --model "$out/model.$precision.onnx" --output "$engines" --timing-cache "$out/timing.cache"
    echo $(( $(date +%s) - start )) > "$out/build-$precision.seconds"
    overfeat validate --reference "$out/model.fp32.onnx" --candidate "$engines/manifest.json" --images "$out/data/single" \
        --max-images 10 --fail-on-skip --json "$out/validate-$precision.json" || status=1
    overfeat eval --model "$engines/manifest.json" --data "$out/data/single" --task classify,localize --json "$out/eval-$precision-single.json" --quiet
    overfeat eval --model "$engines/manifest.json" --data "$out/data/multi" --task detect --json "$out/eval-$precision-multi.json" --quiet
    overfeat bench --model "$engines/manifest.json" --random 4 --json "$out/bench-$precision.json" --plot "$out/bench-$precision.png" || status=1
done
overfeat eval --model "$out/model.fp32.onnx" --data "$out/data/single" --task classify,localize --json "$out/eval-onnx-single.json" --quiet
overfeat eval --model "$out/model.fp32.onnx" --data "$out/data/multi" --task detect --json "$out/eval-onnx-multi.json" --quiet
"$venv/bin/python" -m pytest -m gpu -q || status=1

"$venv/bin/python" - "$out" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
load = lambda name: json.loads((out / name).read_text()) if (out / name).is_file() else None
print()
print(f"{'engines':<10} {'build s':>8} {'validate':<10} {'top-5 err':>9} {'loc err':>8} {'mAP@0.5':>8} {'s/image':>8} {'bench median ms':>16}")
rows = [("onnx fp32", None, None, load("eval-onnx-single.json"), load("eval-onnx-multi.json"), None)]
for p in ("fp32", "fp16", "int8"):
    seconds = (out / f"build-{p}.seconds").read_text().strip() if (out / f"build-{p}.seconds").is_file() else "-"
    rows.append((f"trt {p}", seconds, load(f"validate-{p}.json"), load(f"eval-{p}-single.json"), load(f"eval-{p}-multi.json"), load(f"bench-{p}.json")))
for name, seconds, val, single, multi, bench in rows:
    verdict = "-" if val is None else ("PASS" if val["passed"] else "FAIL")
    median = f"{bench['candidates'][0]['end_to_end']['median_ms']:.1f}" if bench else "-"
    print(f"{name:<10} {seconds or '-':>8} {verdict:<10} {single['top5_error']:>9.2%} {single['localization_error']:>8.2%} {multi['mean_ap']:>8.4f} "
          f"{single['seconds_per_image']:>8.3f} {median:>16}")
EOF
echo "gpu_check: artifacts in $out/; exit $status"
exit "$status"
