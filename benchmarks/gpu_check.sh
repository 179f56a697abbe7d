#!/usr/bin/env bash
# The cohort job's GPU check, prepared to run once on a lent GPU machine (at most 8 minutes).
#
# The machine (see the device tool's KINDS.md) has Python 3.12 with torch, numpy, scipy, pyarrow,
# pillow, safetensors and tqdm, but no pydicom, nibabel or Ray and no network. Before the run, on
# this machine, put their wheels in .whl/ (ignored by git; it travels with `carry: [".whl"]`):
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl pydicom==3.0.2 nibabel==5.4.2 PyWavelets==1.9.0
#
# Ray's wheel (79 MB) is larger than what one call may carry (64 MiB), so without it the script
# runs the job's three stages in one process (decode and write in a thread pool, the model stage on
# the GPU) and says so in the results. Then, with the device tool:
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# and copy $OUT/gpu.md to benchmarks/results/gpu.md (and $OUT/gpu.json beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
OUT_DIR="${OUT:-benchmarks/results}"
nvidia-smi -L || true
timeout 480 python3 benchmarks/gpu_check.py --out "$OUT_DIR" "$@"
