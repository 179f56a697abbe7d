"""Autocast against fp32 on real Harvard MR-PET pairs: the measurement behind ``--precision auto`` (fp16 on CUDA).

Run on the CPU (CPU autocast uses the same bf16/fp16 number formats; a GPU accumulates differently,
which benchmarks/gpu_check.sh measures there). Centre crops keep CPU fp16, which has no fast
kernels, to a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from mdafuse.data import split_pairs
from mdafuse.color import rgb_to_ycbcr
from mdafuse.fusion.pipeline import PRECISIONS, Fuser
from mdafuse.io.images import read_pair


@pytest.fixture(scope="module")
def slices(harvard_root):
    pairs = split_pairs("MR-PET", "test", str(harvard_root.parent))[::20][:3]
    mr, fy = [], []
    for p in pairs:
        a, b = read_pair(p.mr, p.functional)
        mr.append(a[80:176, 80:176])
        fy.append(rgb_to_ycbcr(b)[80:176, 80:176, 0])
    return np.stack(mr), np.stack(fy)


def test_fp16_is_closer_to_fp32_than_bf16(slices):
    import torch

    from mdafuse.jobs.fuse_cohort import CUDA_AUTO_PRECISION

    torch.set_num_threads(1)
    mr, fy = slices
    ref = Fuser().fuse_batch(mr, fy)
    outs = {p: Fuser(precision=p).fuse_batch(mr, fy) for p in ("bf16", "fp16")}
    diffs = {p: np.abs(out - ref) for p, out in outs.items()}
    for p, d in diffs.items():
        assert np.isfinite(d).all(), p
    assert diffs["fp16"].max() < 0.003 and diffs["bf16"].max() < 0.02
    assert diffs["fp16"].mean() < diffs["bf16"].mean() / 3  # fp16's 10-bit mantissa against bf16's 7
    changed = {p: float(np.mean(np.rint(255 * ref) != np.rint(255 * out))) for p, out in outs.items()}
    assert changed["fp16"] < 0.05 and changed["fp16"] < changed["bf16"]
    assert CUDA_AUTO_PRECISION == "fp16" and set(PRECISIONS) == {"fp32", "bf16", "fp16"}


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        Fuser(precision="int8")
