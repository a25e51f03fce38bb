# fcm: Feature Coding for Machines (advMSFC + the MPEG feature anchor for JDE)
#
#   make install   virtual environment in .venv with torch (CPU wheel by default) and fcm
#   make test      the import layering (lint-imports, contracts in pyproject.toml) and the test suite (what CI runs)
#   make demo      the shipped PETS09-S2L1 sample through fcm-track, fcm-encode and fcm-decode (real MOTA)
#   make bench        JDE part 1 / part 2 time per frame (the bundled JDE and JDE-1088x608)
#   make rd           the rate-accuracy study on the sample: anchor and advMSFC x 3 splits -> docs/results.md
#   make bench-e2e    fcm-encode / fcm-decode frames/s end to end with the bundled networks, by stage
#   make bench-codec  VVenC presets against VTM low delay on real packed features: BD-rate on PSNR and MOTA
#   make bench-msfc   advMSFC MSFF / MSFR time per frame and parameters per split
#   make bench-stream live streaming: paced sample and clip through a pipe and TCP, capture-to-tracks latency,
#                     frames skipped, MOTA (STREAM_QPS, default 32: the bundled backbone's >= 90 % point), an overload row (25 fps)
#   make bench-part1  NN part 1 variants (channels-last, oneDNN, bf16, onnxruntime): time, feature error, tracks
#   make fuzz         mutated and forged bitstreams through the decoder (vvenc, lossless; anchor, advmsfc)
#   make vtm          build the VTM reference codec into ./vtm (needs network)
#   make ctc DATASET=tvd METHOD=anchor SPLIT=dn53 CODEC=vtm DATA=/data OUT=runs [MODEL=...]

PYTHON     ?= python3
VENV       ?= .venv
# GPU users: make install TORCH_SPEC="torch" (or any build you prefer), or pip install -e . in
# an environment that already has torch.
TORCH_SPEC ?= torch==2.13.0
PY          = $(VENV)/bin/python
PYTEST_ARGS ?=

DATASET ?= tvd
METHOD  ?= advmsfc
SPLIT   ?= backbone
CODEC   ?= vtm
OUT     ?= runs
MODEL   ?=
SAMPLE  ?= samples/PETS09-S2L1-551-650

.PHONY: install test test-fast demo bench bench-e2e bench-stream bench-part1 rd fuzz bench-codec bench-msfc vtm ctc clean

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test]"

test:
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast:
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# make demo: measured on the 2-core development CPU (README, "What the first commands print")
DEMO_TIME = about 1.5 minutes (84 s measured)
demo:
	@mkdir -p out/demo && date +%s > out/demo/.start
	@echo "make demo: the shipped sample (100 frames) through fcm-track, then advMSFC (QP 32 and 17) and the anchor (QP 32), backbone split"
	@echo "encoded and decoded; $(DEMO_TIME) on a 2-core CPU. MOTA to expect: README, 'What the first commands print'."
	$(VENV)/bin/fcm-track $(SAMPLE) -o out/demo/tracks.txt
	$(VENV)/bin/fcm-encode $(SAMPLE) --qp 32 --split backbone -o out/demo/advmsfc_backbone_qp32.bin
	$(VENV)/bin/fcm-decode out/demo/advmsfc_backbone_qp32.bin --gt $(SAMPLE)
	$(VENV)/bin/fcm-encode $(SAMPLE) --qp 17 --split backbone -o out/demo/advmsfc_backbone_qp17.bin
	$(VENV)/bin/fcm-decode out/demo/advmsfc_backbone_qp17.bin --gt $(SAMPLE)
	$(VENV)/bin/fcm-encode $(SAMPLE) --qp 32 --split backbone --method anchor -o out/demo/anchor_backbone_qp32.bin
	$(VENV)/bin/fcm-decode out/demo/anchor_backbone_qp32.bin --gt $(SAMPLE)
	@echo "make demo took $$(( $$(date +%s) - $$(cat out/demo/.start) )) s"

bench:
	$(PY) benchmarks/bench_jde.py --repeats 3

bench-e2e:
	$(PY) benchmarks/bench_e2e.py

rd:
	$(PY) tools/rd_study.py --data samples --out $(OUT)/rd

FUZZ_ARGS ?=
fuzz:
	$(PY) benchmarks/fuzz.py --details $(OUT)/fuzz.csv $(FUZZ_ARGS)

# VTM from VTM_DIR, else $$FCM_VTM_DIR (make vtm builds it); points are kept in $(OUT)/bench_codec
VTM_DIR ?=
bench-codec:
	$(PY) benchmarks/bench_codec.py --out $(OUT)/bench_codec $(if $(VTM_DIR),--vtm-dir $(VTM_DIR),)

bench-msfc:
	$(PY) benchmarks/bench_msfc.py --repeats 3

# the rate points of the live rows: where advMSFC backbone keeps >= 90 % of the uncompressed MOTA on the sample
STREAM_QPS ?= 32
STREAM_ARGS ?=
bench-stream:
	$(PY) benchmarks/bench_stream.py --qps $(STREAM_QPS) $(STREAM_ARGS)

bench-part1:
	$(PY) benchmarks/bench_part1.py --tracks

vtm:
	tools/vtm_build.sh --prefix vtm

ctc:
	@test -n "$(DATA)" || { echo "error: set DATA=/path/to/the/sequences" >&2; exit 1; }
	$(VENV)/bin/fcm-ctc run --dataset $(DATASET) --method $(METHOD) --split $(SPLIT) --codec $(CODEC) \
		--data $(DATA) --output $(OUT) $(if $(MODEL),--model $(MODEL),)

clean:
	rm -rf out build *.egg-info .pytest_cache
