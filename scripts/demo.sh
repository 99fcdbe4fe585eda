#!/usr/bin/env bash
# The demo pipeline, from the committed shapes model to an accuracy report. Writes only under
# out/demo/ (cleared first): the test images, the exported ONNX model and its INT8 version, the
# evaluation JSON of ONNX Runtime (fp32, int8) and of PyTorch (and of ONNX Runtime's detection by
# --method vote), the validation report, the TensorRT build plan, annotated pictures and report.md.
set -euo pipefail
out=out/demo
model=models/shapes-accurate-w12.safetensors
count=${DEMO_IMAGES:-60}
seed=2026  # the test images are not the training images (train split, seed 0)
rm -rf "$out"
mkdir -p "$out/drawn/localize" "$out/drawn/detect"

overfeat datasets shapes --out "$out/data/single" --split test --count "$count" --seed "$seed" --kind single
overfeat datasets shapes --out "$out/data/multi" --split test --count "$count" --seed "$seed" --kind multi
overfeat export --checkpoint "$model" --output "$out/model.onnx"

# INT8: calibrate on generated validation images and gate against fp32 on the single-object test
# images; when the gate fails, --auto-exclude keeps the most sensitive layers in float until it
# holds (chosen on these same test images). A model that fails even so is not written; the demo
# then writes the plain INT8 model with --no-check (the ranges come from the cache) only to show
# its figures next to fp32 in the report.
int8=(calibrate --model "$out/model.onnx" --images shapes:val:64 --method minmax --output "$out/model.int8.onnx")
code=0
overfeat "${int8[@]}" --auto-exclude --check "$out/data/single/test.json" --check-images "$count" --report "$out/int8-check.json" || code=$?
if [ "$code" -eq 1 ]; then  # no exclusion set passed (exit 1); anything else is an error that ends the demo
    overfeat "${int8[@]}" --no-check --report "$out/int8-unchecked.json" --quiet
elif [ "$code" -ne 0 ]; then
    exit "$code"
fi

for kind in single multi; do
    tasks=$([ "$kind" = single ] && echo classify,localize || echo detect)
    overfeat eval --model "$out/model.onnx" --data "$out/data/$kind" --task "$tasks" --json "$out/eval-onnxruntime-$kind.json"
    overfeat eval --model "$out/model.int8.onnx" --data "$out/data/$kind" --task "$tasks" --json "$out/eval-int8-$kind.json"
    overfeat eval --model "$model" --data "$out/data/$kind" --task "$tasks" --json "$out/eval-torch-$kind.json"
done
# the same candidates decoded by NMS with voting instead of the paper's greedy merge
overfeat eval --model "$out/model.onnx" --data "$out/data/multi" --task detect --method vote --json "$out/eval-onnxruntime-multi-vote.json"

# Raw outputs of PyTorch and INT8 against the exported model through Polygraphy (exit 1 when a
# candidate is outside its tolerance: reported, not fatal here), and the TensorRT build plan
# (--dry-run: this machine has no GPU).
code=0
overfeat validate --reference "$out/model.onnx" --candidate "$model" --candidate "$out/model.int8.onnx" \
    --images "$out/data/single" --max-images 10 --json "$out/validate.json" > "$out/validate.txt" || code=$?
[ "$code" -le 1 ] || exit "$code"
overfeat build --model "$out/model.onnx" --output "$out/engines" --dry-run > "$out/engines-plan.txt"
overfeat infer --model "$out/model.onnx" --task localize --draw "$out/drawn/localize" --json "$out/infer-localize.json" \
    "$out"/data/single/test/00000[0-3].png > /dev/null
overfeat infer --model "$out/model.onnx" --task detect --draw "$out/drawn/detect" --json "$out/infer-detect.json" \
    "$out"/data/multi/test/00000[0-3].png > /dev/null

python scripts/demo_report.py "$out" > "$out/report.md.tmp" && mv "$out/report.md.tmp" "$out/report.md"
echo
cat "$out/report.md"
echo
echo "demo artifacts in $out/:"
echo "  model.onnx             the exported model (parity report: model.parity.json)"
echo "  model.int8.onnx        INT8 (Q/DQ) of it; accuracy gate: int8-check.json, ranges: model.int8.calib.json"
echo "  eval-*.json            accuracy through ONNX Runtime (fp32, int8) and through PyTorch; *-vote.json: detection by --method vote"
echo "  validate.json/.txt     PyTorch and INT8 against model.onnx through Polygraphy (raw outputs and task agreement)"
echo "  engines-plan.txt       the TensorRT engines 'overfeat build' would build on a GPU (--dry-run)"
echo "  drawn/                 annotated pictures (localize: single-object images, detect: multi-object)"
echo "  report.md              accuracy table and timings"
