# fcm: Feature Coding for Machines (advMSFC + MPEG feature anchor for JDE-1088x608)
#
#   make install   virtual environment in .venv with torch (CPU wheel by default) and fcm
#   make test      the test suite (what CI runs)
#   make demo      a synthetic clip through fcm-track with random weights (smoke run)
#   make bench     JDE part 1 / part 2 time per frame

PYTHON     ?= python3
VENV       ?= .venv
# GPU users: make install TORCH_SPEC="torch" (or any build you prefer), or pip install -e . in
# an environment that already has torch.
TORCH_SPEC ?= torch==2.13.0
PY          = $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test]"

test:
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast:
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo:
	$(PY) -c "from fcm_common.synthetic import write_mot_sequence as w; w('out/demo/SYN-01', num_frames=4)"
	$(VENV)/bin/fcm-track out/demo/SYN-01 --weights random -o out/demo/SYN-01.txt

bench:
	$(PY) benchmarks/bench_jde.py --repeats 3

clean:
	rm -rf out build *.egg-info .pytest_cache
