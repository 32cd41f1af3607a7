# Set-up and everyday commands. Each target installs what is missing first and skips what is
# already there (stamp files in the virtual environments).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch: the CPU build by default; any release mmdeform supports, e.g. TORCH=torch==2.14.1 (the
# CUDA build). The venv remembers its torch; giving another one re-installs it and rebuilds the op.
TORCH ?= $(or $(shell cat $(VENV)/.torch 2>/dev/null),torch==2.13.0)
# The CUDA build check needs the CUDA build of torch: the main venv's when TORCH is one, else
# CUDA_TORCH in a venv of its own.
CUDA_VENV ?= .venv-cuda
CUDA_TORCH ?= torch==2.14.1
CUDA_ARCHS ?= 8.0;9.0
NATIVE_SOURCES := setup.py $(wildcard ops/csrc/*.h ops/csrc/*.cpp ops/csrc/cpu/*.cpp ops/csrc/cuda/*.cu)
EXT := mmdeform/_C$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")

.PHONY: install demo test check-cuda-build gpu-check gpu-kit benchmark clean FORCE

install: $(VENV)/.installed-dev $(EXT)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Which torch the venv was made with (rewritten only when TORCH changes).
$(VENV)/.torch: FORCE
	@mkdir -p $(VENV); [ "$$(cat $@ 2>/dev/null)" = '$(TORCH)' ] || echo '$(TORCH)' > $@

# Wheels only, nothing compiled (mmcv-lite: docs/install.md). torch first, so that
# requirements.txt's torch>=... keeps it.
$(VENV)/.installed: requirements.txt $(VENV)/.torch | $(PY)
	$(PIP) install "$(TORCH)" ninja
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install -r requirements-dev.txt
	touch $@

# mmdeform in editable mode; this builds the native op (mmdeform._C) into the source tree, and
# again whenever its sources change; and the start-up file that lets mmdet be imported before
# mmdeform under mmcv-lite (mmdeform/mmcv_ext.py).
$(EXT): $(NATIVE_SOURCES) $(VENV)/.installed
	$(PIP) install --no-build-isolation --no-deps --use-pep517 -e .
	$(PY) -c "import mmdeform.mmcv_ext as m; m.write_startup_file()"
	touch $@

# The main job on the embedded shapes dataset (no download): generate it once, train the
# two-stage demo model, evaluate it with the COCO metric, and draw ground truth | detections on
# the val images at the score threshold of best F1 on the val split.
DEMO_CONFIG ?= configs/demo/deformable_detr_tiny_2stage_shapes.py
DEMO_DIR ?= work_dirs/demo
SHAPES := data/shapes/annotations/instances_val.json

demo: install $(SHAPES)
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) "$$(cat $(DEMO_DIR)/last_checkpoint)" --work-dir $(DEMO_DIR)
	$(PY) tools/analysis_tools/draw_detections.py $(DEMO_CONFIG) "$$(cat $(DEMO_DIR)/last_checkpoint)" \
	  --out-dir $(DEMO_DIR)/detections
	$(PY) tools/analysis_tools/plot_logs.py $(DEMO_DIR) --keys loss coco/bbox_mAP coco/bbox_mAP_50 \
	  --out $(DEMO_DIR)/curves.png
	@echo "Ground truth | detections drawn in $(DEMO_DIR)/detections, curves in $(DEMO_DIR)/curves.png"

# the val split's json is written last, atomically: its presence means the dataset is complete
$(SHAPES): | install
	$(PY) tools/misc/generate_shapes_dataset.py data/shapes

test: install
	$(PY) -m pytest tests -v -rs
	$(MAKE) check-cuda-build

# Compiles and links the CUDA kernels for sm_80 and sm_90 with nvcc; runs nothing on a GPU.
# CUDA_HOME: the toolkit's own folder (tools/misc/cuda_home.sh, as gpu-check finds it). The main
# venv serves when its torch is a CUDA build, else $(CUDA_VENV).
check-cuda-build: $(VENV)/.installed
	@export CUDA_HOME="$$(tools/misc/cuda_home.sh)"; \
	if [ -z "$$CUDA_HOME" ]; then echo "check-cuda-build: no nvcc here, skipped"; exit 0; fi; \
	set -e; \
	if $(PY) -c "import sys, torch; sys.exit(torch.version.cuda is None)"; then python=$(PY); else \
	  python=$(CUDA_VENV)/bin/python; \
	  [ -x $$python ] || $(PYTHON) -m venv $(CUDA_VENV); \
	  [ -f $(CUDA_VENV)/.installed ] || { $$python -m pip install "$(CUDA_TORCH)" "setuptools<82" ninja numpy \
	    && touch $(CUDA_VENV)/.installed; }; fi; \
	echo "check-cuda-build: torch $$($$python -c 'import torch; print(torch.__version__)') in $$python"; \
	FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$(CUDA_ARCHS)" MAX_JOBS=2 $$python setup.py \
	  build_ext --build-temp build-cuda/temp --build-lib build-cuda/lib; \
	$$python tools/misc/check_cuda_build.py build-cuda/lib "$(CUDA_ARCHS)"

# On a machine with a GPU (torch with CUDA and nvcc; no network, no mmcv/mmengine/mmdet needed):
# builds the op for the local GPU, runs the CUDA tests, the no-sync check, the op benchmark, the
# training check (with the kit below) and compute-sanitizer, each with its own time limit; one
# summary (summary.md, summary.json) and the logs, at most 8 files, in GPU_CHECK_DIR (default
# $OUT where that is set). See tools/misc/gpu_check.sh.
GPU_CHECK_DIR ?= $(or $(OUT),gpu-check)
gpu-check:
	PYTHON=$(PYTHON) tools/misc/gpu_check.sh $(GPU_CHECK_DIR)

# The wheels a GPU machine without network needs for the training path of gpu-check (Python 3.12,
# manylinux x86_64; what such a machine already has, torch, numpy, scipy, matplotlib, opencv,
# pyyaml, rich, six, tqdm, pillow and packaging among them, is left out; setuptools<82 because
# mmengine imports pkg_resources). Run where the package index is reachable; gpu-check installs
# GPU_KIT_DIR when it is there, without network.
GPU_KIT_DIR ?= gpu-kit
GPU_KIT_WHEELS := mmengine==0.10.7 mmcv-lite==2.1.0 mmdet==3.3.0 pycocotools==2.0.11 \
  shapely==2.2.0 terminaltables==3.1.10 addict==2.4.0 termcolor==3.3.0 yapf==0.43.0 \
  platformdirs==4.14.9 setuptools==81.0.0
gpu-kit:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d $(GPU_KIT_DIR) $(GPU_KIT_WHEELS)
	@du -sh $(GPU_KIT_DIR)

benchmark: install
	$(PY) tools/analysis_tools/benchmark_msda.py

clean:
	rm -rf build build-cuda mmdeform/_C*.so *.egg-info
