#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, the release binary built elsewhere with
# `cargo build --release --features cuda` and PyTorch installed (benches/pytorch_twin.py says
# how), it checks that greedy text on CUDA is the CPU's, runs `alignlab bench` on CUDA against
# the PyTorch twin on the same GPU, and on native wgpu (Vulkan), on the 124M-parameter model
# with random weights, and writes everything to one JSON. Meant to finish within 8 minutes.
#
#   benches/gpu_check.sh path/to/alignlab [out.json]
#
# Environment: PYTHON (default python3), PEAK_TFLOPS (the GPU's dense FP32 peak for the MFU,
# default 67, an H100/H200 SXM's), REPEATS (default 2).
set -euo pipefail
BIN=${1:?usage: benches/gpu_check.sh path/to/alignlab [out.json]}
OUT=${2:-gpu_check.json}
PYTHON=${PYTHON:-python3}
PEAK_TFLOPS=${PEAK_TFLOPS:-67}
REPEATS=${REPEATS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
MODEL=random:llama-124m
START=$SECONDS
say() { echo "== $* ($((SECONDS - START)) s)"; }

say "greedy text: CPU (flex) against CUDA, the built-in model"
PROMPT="Once upon a time"
"$BIN" --backend flex generate --prompt "$PROMPT" --max-tokens 30 --temperature 0 > "$WORK/greedy-cpu.txt"
"$BIN" --backend cuda generate --prompt "$PROMPT" --max-tokens 30 --temperature 0 > "$WORK/greedy-cuda.txt"
if cmp -s "$WORK/greedy-cpu.txt" "$WORK/greedy-cuda.txt"; then GREEDY=true; else GREEDY=false; fi
echo "equal: $GREEDY"

say "CUDA against PyTorch on the same GPU, $MODEL"
"$BIN" --backend cuda bench --model "$MODEL" --repeats "$REPEATS" \
  --vs-pytorch --python "$PYTHON" --twin "$HERE/pytorch_twin.py" --twin-device cuda \
  --json "$WORK/cuda.json"

say "wgpu (Vulkan), $MODEL: scoring and the DPO step"
WGPU_OK=true
"$BIN" --backend wgpu bench --model "$MODEL" --repeats "$REPEATS" --only score,dpo \
  --json "$WORK/wgpu.json" || WGPU_OK=false

say "writing $OUT"
"$PYTHON" - "$WORK" "$OUT" "$GREEDY" "$PEAK_TFLOPS" "$WGPU_OK" <<'EOF'
import json, os, sys
work, out, greedy, peak, wgpu_ok = sys.argv[1:]
read = lambda name: json.load(open(os.path.join(work, name)))
cuda = read("cuda.json")
report = {
    "greedy_text_equal_cpu_cuda": greedy == "true",
    "greedy_text": {k: open(os.path.join(work, f"greedy-{k}.txt")).read() for k in ("cpu", "cuda")},
    "peak_tflops": float(peak),
    "cuda": cuda,
    "wgpu": read("wgpu.json") if wgpu_ok == "true" else None,
}
# MFU of every figure whose work is counted, and whether anything compiled after warm-up.
report["mfu"] = {
    m["name"]: m["model_flops_per_second"] / 1e12 / float(peak)
    for m in cuda["measurements"] if m.get("model_flops_per_second")
}
report["compiled_after_warmup"] = {
    backend: {m["name"]: m["compiled_after_warmup"] for m in r["measurements"]}
    for backend, r in (("cuda", cuda), ("wgpu", report["wgpu"])) if r
}
json.dump(report, open(out, "w"), indent=2)
for name, mfu in report["mfu"].items():
    print(f"MFU {name}: {100 * mfu:.1f}% of {peak} TFLOP/s")
EOF
say "done"
