# fcm: Feature Coding for Machines (advMSFC + MPEG feature anchor for JDE-1088x608)
#
#   make install   virtual environment in .venv with torch (CPU wheel by default) and fcm
#   make test      the import layering (lint-imports, contracts in pyproject.toml) and the test suite (what CI runs)
#   make demo      a synthetic clip through fcm-track with random weights (smoke run)
#   make bench        JDE part 1 / part 2 time per frame
#   make bench-codec  inner codecs on the same packed anchor features
#   make bench-msfc   advMSFC MSFF / MSFR time per frame and parameters per split
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

.PHONY: install test test-fast demo bench bench-codec bench-msfc vtm ctc clean

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

demo:
	$(PY) -c "from fcm_common.data.synthetic import write_mot_sequence as w; w('out/demo/SYN-01', num_frames=4)"
	$(VENV)/bin/fcm-track out/demo/SYN-01 --weights random -o out/demo/SYN-01.txt
	$(VENV)/bin/fcm-encode out/demo/SYN-01 --method anchor --weights random --split alt1 --qp 32 --preset faster -o out/demo/SYN-01.bin
	$(VENV)/bin/fcm-decode out/demo/SYN-01.bin --weights random -o out/demo/SYN-01_decoded.txt --gt out/demo/SYN-01

bench:
	$(PY) benchmarks/bench_jde.py --repeats 3

bench-codec:
	$(PY) benchmarks/bench_codec.py --split alt1 --frames 4 --presets faster,medium

bench-msfc:
	$(PY) benchmarks/bench_msfc.py --repeats 3

vtm:
	tools/vtm_build.sh --prefix vtm

ctc:
	@test -n "$(DATA)" || { echo "error: set DATA=/path/to/the/sequences" >&2; exit 1; }
	$(VENV)/bin/fcm-ctc run --dataset $(DATASET) --method $(METHOD) --split $(SPLIT) --codec $(CODEC) \
		--data $(DATA) --out $(OUT) $(if $(MODEL),--model $(MODEL),)

clean:
	rm -rf out build *.egg-info .pytest_cache
