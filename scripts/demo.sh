#!/usr/bin/env bash
# The main job on the built-in default: generate the synthetic dataset if missing, train the `demo`
# experiment (tiny I3D ResNet with non-local blocks) on the CPU, then test it with multi-view testing.
# Sets up .venv on first use. Extra args are Hydra overrides for tools/train.py.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python tools/make_synthetic_dataset.py --root data/synthetic
python tools/train.py experiment=demo "$@"
