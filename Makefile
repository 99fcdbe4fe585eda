# make test  — set up .venv (first time, or when pyproject.toml/constraints.txt change) and run the tests
# make demo  — set up .venv and run the demo pipeline into out/demo/
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned to the local CPU build through constraints.txt: never resolve it unconstrained.
PIP    := $(BIN)/python -m pip install --quiet --progress-bar off --constraint constraints.txt

.PHONY: test demo lint format clean triton

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# After installing, compile the post-processing kernels (greedy merge, NMS) once into numba's
# cache (about 20 s), so that no later command pays for it; a change to their source recompiles
# them on next use.
WARM   := $(BIN)/python -c "from overfeat.runtime.kernels import compiled; compiled()"

$(VENV)/.installed-demo: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[export,ort,openvino,images,validate,fast]"
	$(WARM)
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[export,ort,openvino,images,validate,fast,triton,dev]"
	$(WARM)
	touch $@

# The Triton server's environment: PyTriton's tritonserver with its Python backend (it needs
# NumPy < 2) and the runtime that backend runs ('overfeat serve --triton-env .venv-triton').
TRITON := .venv-triton
$(TRITON)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(TRITON)
	$(TRITON)/bin/python -m pip install --quiet --progress-bar off --constraint constraints.txt \
		"nvidia-pytriton==0.7.0" "numpy<2" -e ".[ort,fast]"
	touch $@

triton: $(TRITON)/.installed

test: $(VENV)/.installed-test $(TRITON)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	OVERFEAT_TRITON_ENV="$(abspath $(TRITON))" $(BIN)/python -m pytest

demo: $(VENV)/.installed-demo
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(TRITON) out .pytest_cache
