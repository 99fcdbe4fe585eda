#!/usr/bin/env bash
# The demo pipeline: export a reduced-width OverFeat (accurate topology, all three heads) to
# ONNX with its parity check, then show what the file holds. Writes only under out/demo/.
set -euo pipefail
out=out/demo
mkdir -p "$out"
printf '%s\n' circle square triangle star cross > "$out/classes.txt"
overfeat export --arch accurate --random-init --seed 0 --num-classes 5 --classes "$out/classes.txt" \
    --heads cls,loc,det --width 0.25 --output "$out/model.onnx"
echo
overfeat inspect "$out/model.onnx"
echo
echo "demo artifacts in $out/:"
ls -l "$out"
