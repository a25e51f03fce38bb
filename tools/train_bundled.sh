#!/usr/bin/env bash
# The commands that produced every weight file fcm ships in cfg/weights/ (docs/models.md).
# Seeded and resumable: re-running a stopped step continues it (pass --resume by hand), and a
# finished run re-run from scratch on the same machine and torch build gives the same weights.
#
#   tools/train_bundled.sh jde            # JDE-576x320-fcm  -> cfg/weights/jde_576x320_fcm.pt
#   tools/train_bundled.sh msfc SPLIT     # advMSFC for SPLIT -> cfg/weights/advmsfc_576x320_SPLIT.pt
#   tools/train_bundled.sh qact SPLIT     # its QACT table (fcm-calibrate), recorded in that file
#
# Needs the shared data (DATA, default ../shared/data) and `pip install -e ".[train]"`.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs}
what=${1:?usage: tools/train_bundled.sh jde | msfc SPLIT | qact SPLIT}
shift

case "$what" in
jde)
  mkdir -p "$RUNS/jde576"
  "$BIN/fcm-train-jde" "$D/PETS09-S2L1:1-550" \
    --teacher-video "$D/clips/one-by-one-person-detection.mp4" --teacher-step 5 --teacher-score 0.5 \
    --teacher-detector "$D/teachers/yolox_nano_coco.onnx" --teacher-embedder "$D/teachers/osnet_x0_25_msmt17.onnx" \
    --val samples/PETS09-S2L1-551-650 --val-every 500 \
    --steps 5000 --batch-size 8 --optimizer adamw --lr 2e-3 --warmup 300 --weight-decay 5e-4 \
    --checkpoint-every 250 --seed 0 --threads 2 --device cpu \
    -o "$RUNS/jde576/jde576.pt" --export cfg/weights/jde_576x320_fcm.pt "$@"
  ;;
msfc)
  split=${1:?usage: tools/train_bundled.sh msfc dn53|alt1|backbone}
  shift
  mkdir -p "$RUNS/msfc"
  # the bundled JDE's training frames only (PETS09-S2L1 1..550 and the unlabelled clip); JDE = the bundled one.
  # Stage 1: 3000 steps of reconstruction only. Stage 2: 1000 more steps with the task term (the error
  # of JDE's prediction-head inputs), which the detector needs: reconstruction alone left MOTA near 0.
  # Run one training at a time: two torch jobs on 2 cores slow each other down many times over.
  common=("$D/PETS09-S2L1:1-550" "$D/clips/one-by-one-person-detection.mp4" --split "$split" --batch-size 8
          --lr 5e-4 --quant-noise --cache-features --cache-frames 1200 --seed 0 --device cpu
          -o "$RUNS/msfc/advmsfc_$split.pt")
  "$BIN/fcm-train" "${common[@]}" --steps 3000 --checkpoint-every 250 "$@"
  "$BIN/fcm-train" "${common[@]}" --steps 4000 --checkpoint-every 100 --task-weight 1.0 --resume \
    --export "cfg/weights/advmsfc_576x320_$split.pt" "$@"
  if [ "$split" = backbone ]; then
    # Stage 3 (backbone only): 2000 more steps with task weight 4. No coding, all channels, first
    # 50 sample frames: MOTA 0.401 -> 0.417 (152 channels), 0.351 -> 0.421 (54), 0.189 -> 0.281 (18).
    "$BIN/fcm-train" "${common[@]}" --steps 6000 --checkpoint-every 250 --task-weight 4.0 --resume \
      --export "cfg/weights/advmsfc_576x320_$split.pt" "$@"
  fi
  # then its QACT table: tools/train_bundled.sh qact SPLIT
  ;;
qact)
  split=${1:?usage: tools/train_bundled.sh qact dn53|alt1|backbone}
  shift
  # QACT table of a bundled advMSFC model, measured on PETS09-S2L1 501..550 (training frames of the
  # JDE, not the frames the study reports on) at the study's advMSFC QPs, and recorded in the model.
  # candidate channel counts: the paper's proportions of the fused width (cfg/qact.toml), given
  # explicitly because the model's own table is what this step replaces
  case "$split" in
    dn53) ks=256,192,128,91,64,48 ;;
    alt1) ks=128,64,48,32,24,16 ;;
    backbone) ks=152,73,54,36,27,18 ;;
    *) echo "error: unknown split '$split'" >&2; exit 2 ;;
  esac
  calib="$RUNS/calib/PETS09-S2L1-501-550"
  [ -d "$calib" ] || "$BIN/python" tools/make_excerpt.py "$D/PETS09-S2L1" 501 550 "$calib"
  "$BIN/fcm-calibrate" "$calib" --split "$split" --model "cfg/weights/advmsfc_576x320_$split.pt" \
    --qps 2,7,12,17,22,27 --channels "$ks" --codec vvenc --preset faster --intra-period 32 --frames 40 --eval-mode mot \
    -o "$RUNS/calib/qact_$split.toml" --record-in-model --device cpu "$@"
  ;;
*)
  echo "error: unknown target '$what' (jde, msfc SPLIT or qact SPLIT)" >&2
  exit 2
  ;;
esac
