#!/usr/bin/env bash
# One prepared GPU session (issue 24): benchmarks on CUDA and the bundled JDE's training run.
#
#   tools/gpu_session.sh train    NN benchmarks (bench_jde, the public-JDE comparison), then
#                                 fcm-train-jde on the prepared data for TRAIN_BUDGET seconds
#   tools/gpu_session.sh bench    make bench-e2e on CUDA: bundled network and JDE-1088x608,
#                                 fp32 / bf16, batch 1 / 8
#
# Written for a lent GPU machine that reaches no package registry: the Python packages fcm needs
# beyond that machine's image come as wheels in .whl/ and as files in .gpu/site/ (imageio_ffmpeg
# without its 172 MB ffmpeg binary, which comes xz-compressed in .gpu/ffmpeg/ with the bench call
# only: a call carries 64 MiB at most); the prepared training data is in .gpu/data/ (fcm-train-jde
# --prepare), a checkout of the public JDE code in .gpu/ref/. Results go to $OUT. The bench call
# needs no shipped weights: it times the network the train call just trained (kept on the machine
# in runs/gpu_jde/) and an untrained advMSFC model of the shipped architecture.
# On a CPU (a dry run with tiny sizes): DRY=1 PY=.venv/bin/python tools/gpu_session.sh train
set -uo pipefail
cd "$(dirname "$0")/.."
R=$PWD
OUT=${OUT:-$R/runs/gpu}
PY=${PY:-python3}
DRY=${DRY:-0}
TRAIN_BUDGET=${TRAIN_BUDGET:-300}
mkdir -p "$OUT" /tmp/site
export PYTHONUNBUFFERED=1 OUT

setup() {
  if [ "$DRY" = 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    cp -r .gpu/site/. /tmp/site/
    ln -sfn "$R/cfg" /tmp/site/fcm_cfg
    export PYTHONPATH=$R:/tmp/site
    nvidia-smi > "$OUT/machine.txt" 2>&1
  fi
  "$PY" -c "import torch, platform; print('torch', torch.__version__, '| python', platform.python_version(), '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" | tee -a "$OUT/machine.txt"
}

cli() {  # an fcm command by its module (entry points are not installed there); $1: seconds allowed
  local limit=$1 module=$2; shift 2
  timeout "$limit" "$PY" -c "import sys; from $module import main; sys.argv[0] = '$module'; main()" "$@"
}

train() {
  if [ "$DRY" = 0 ]; then
    dev=cuda
    timeout 120 "$PY" benchmarks/bench_jde.py --device cuda --dtypes fp32,bf16,fp16 --batches 1,8 --repeats 10 --warmup 3 2>&1 | tee "$OUT/bench_jde.txt"
    timeout 90 "$PY" benchmarks/bench_jde.py --device cuda --dtypes fp32,bf16 --batches 1,8 --repeats 10 --warmup 3 --channels-last 2>&1 | tee -a "$OUT/bench_jde.txt"
    timeout 90 "$PY" benchmarks/bench_jde_reference.py --reference-dir .gpu/ref --device cuda 2>&1 | tee "$OUT/bench_jde_reference.txt"
    steps=40000; batch=64; workers=""
  else
    dev=cpu; steps=60; batch=2; workers="--workers 1"
  fi
  rm -rf runs/gpu_jde && mkdir -p runs/gpu_jde
  # the recipe of the bundled JDE-576x320-fcm (tools/train_bundled.sh jde-gpu records it)
  data=(.gpu/data/*/)
  cli $((TRAIN_BUDGET + 150)) fcm_common.cli.train_jde "${data[@]}" \
    --val samples/PETS09-S2L1-551-650 --val-every 1000000 \
    --steps $steps --batch-size $batch --optimizer adamw --lr 3e-3 --warmup 300 --weight-decay 5e-4 \
    --jitter wide --time-budget "$TRAIN_BUDGET" --checkpoint-every 250 --seed 0 --device $dev $workers \
    -o runs/gpu_jde/jde.pt --export "$OUT/jde_576x320_fcm.pt" > "$OUT/train.txt" 2>&1
  tail -c 6000 "$OUT/train.txt"
  cp runs/gpu_jde/jde.log.jsonl "$OUT/" 2>/dev/null
  cp "$OUT/jde_576x320_fcm.pt" runs/gpu_jde/ 2>/dev/null  # for the bench call
  # the fp32 weights without the optimiser state, in two files of less than 16 MiB (to continue on a CPU)
  "$PY" - <<'EOF' 2>&1 | tee -a "$OUT/train.txt"
import os, torch
ckpt = torch.load("runs/gpu_jde/jde.pt", map_location="cpu", weights_only=True)
keys = sorted(ckpt["model"])
half = len(keys) // 2
out = os.environ.get("OUT", "runs/gpu")
for name, part in (("a", keys[:half]), ("b", keys[half:])):
    piece = {"epoch": ckpt["epoch"], "model": {k: ckpt["model"][k] for k in part}}
    if name == "a":
        piece["fcm"] = ckpt["fcm"]
    torch.save(piece, f"{out}/jde_fp32_{name}.pt")
print("fp32 weights:", ckpt["fcm"]["step"], "steps, saved in two parts")
EOF
}

bench() {
  if [ "$DRY" = 0 ]; then
    xz -d < .gpu/ffmpeg/ffmpeg.xz > /tmp/ffmpeg && chmod +x /tmp/ffmpeg || exit 1
    export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg
    [ -f cfg/weights/jde_576x320_fcm.pt ] || cp runs/gpu_jde/jde_576x320_fcm.pt cfg/weights/ || exit 1
    dev=cuda; frames=50
  else
    dev=cpu; frames=3
  fi
  b="timeout 150 $PY benchmarks/bench_e2e.py --device $dev --frames $frames"
  $b 2>&1 | tee "$OUT/bench_e2e.txt"
  $b --methods advmsfc --precision bf16 --channels-last --batch-size 8 2>&1 | tee -a "$OUT/bench_e2e.txt"
  for extra in "" "--precision bf16 --channels-last --batch-size 8" "--precision bf16 --channels-last --batch-size 8 --preset faster"; do
    $b --network jde1088 --methods advmsfc --skip-decode $extra 2>&1 | tee -a "$OUT/bench_e2e.txt"
  done
}

setup
case "${1:-}" in
  train) train ;;
  bench) bench ;;
  *) echo "usage: tools/gpu_session.sh train|bench" >&2; exit 2 ;;
esac
