"""Run the benchmark: MdAFuse against the classical baselines on a folder of registered MR/functional pairs.

:func:`run_benchmark` fuses every pair with every method, scores each fused image with
:func:`mdafuse.metrics.compute_all` on luminance (MR, functional Y, fused Y) and writes to the
output folder:

- ``metrics.parquet``: one row per (pair, method) with ``dataset``, ``pair``, ``series``,
  ``method``, every metric, ``seconds`` (fusion wall time of that pair, after one untimed
  warm-up call per method in each process) and ``weights_sha256``
  (MdAFuse rows only);
- ``summary.md``: :func:`summarise` of that table;
- ``comparison.png``: MR, functional and every fused image for two example pairs, each with two
  enlarged regions of interest;
- ``metrics_chart.png``: grouped bars of every metric normalised across methods (1 = best).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mdafuse.data import MODALITY_FOLDERS, PairPaths, find_data_root, harvard_pairs, split_pairs
from mdafuse.evaluation.methods import MDAFUSE, available_methods
from mdafuse.evaluation.plots import plot_comparison, plot_metrics_chart
from mdafuse.evaluation.report import summarise
from mdafuse.threads import threads_for_children

__all__ = ["SPLITS", "resolve_pairs", "run_benchmark"]

logger = logging.getLogger(__name__)

SPLITS = ("test", "train", "all")


def _dataset_of_folder(folder: Path) -> str:
    if (folder / "MR").is_dir():
        for name, sub in MODALITY_FOLDERS.items():
            if (folder / sub).is_dir():
                return name
    expected = "|".join(MODALITY_FOLDERS.values())
    raise FileNotFoundError(f"{folder}: expected a dataset folder holding MR/ and one of {expected}/")


def resolve_pairs(dataset: str | Path, split: str = "test") -> tuple[str, list[PairPaths]]:
    """Find the pairs to benchmark.

    Args:
        dataset: a folder laid out like the shared ``harvard/MR-PET`` (``MR/`` plus ``PET/``,
            ``SPECT/`` or ``CT/`` with matching PNG names), or one of ``MR-PET``, ``MR-SPECT``,
            ``MR-CT``, resolved under the shared data (:func:`mdafuse.data.find_data_root`).
        split: ``"test"`` or ``"train"`` take that part of the recorded series split when the
            folder is a shared Harvard folder (``.../harvard/<name>``); ``"all"`` takes every pair.
            Other folders have no recorded split and always use every pair.

    Returns:
        ``(dataset name, pairs)``, pairs sorted by name.

    Raises:
        ValueError: unknown ``split`` or no pairs found.
        FileNotFoundError: the dataset folder cannot be found.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
    path = Path(dataset)
    if not path.is_dir() and str(dataset) in MODALITY_FOLDERS:
        root = find_data_root()
        if root is None:
            raise FileNotFoundError(f"dataset {dataset!r}: shared data not found; set MDAFUSE_DATA to the folder holding harvard/")
        path = root / "harvard" / str(dataset)
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: not a dataset folder nor one of {sorted(MODALITY_FOLDERS)}")
    name = _dataset_of_folder(path)
    shared = path.resolve().name == name and path.resolve().parent.name == "harvard"
    if split == "all":
        pairs = harvard_pairs(name, path)
    elif shared:
        pairs = split_pairs(name, split, path)
    else:
        logger.warning("%s has no recorded train/test split; using all of its pairs (split=%r ignored)", path, split)
        pairs = harvard_pairs(name, path)
    if not pairs:
        raise ValueError(f"{path}: no {name} pairs found for split {split!r} (PNG files with the same name in MR/ and {MODALITY_FOLDERS[name]}/)")
    return name, pairs


def _example_indices(n: int, k: int = 2) -> list[int]:
    picks: list[int] = []
    for i in [(j + 1) * n // (k + 1) for j in range(k)] + list(range(n)):
        if i not in picks and len(picks) < k:
            picks.append(i)
    return picks


def _init_worker(weights: Path | None, device: str, threads: int | None) -> None:
    """Load the MdAFuse model once per process (the benchmark's process or a pool worker)."""
    fuser = None
    if weights is not None:
        from mdafuse.fusion.pipeline import Fuser

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        fuser = Fuser(weights=weights, device=device)
    _WORKER.update(fuser=fuser, warm=False)


_WORKER: dict = {}


def _score_pair(pair: PairPaths, methods: Sequence[str], metric_names: Sequence[str], keep: bool) -> tuple[list[dict], dict]:
    """Fuse one pair with every method and score it: rows (method, metrics, seconds) and, if ``keep``, the images."""
    from mdafuse.baselines import fuse_color
    from mdafuse.color import luminance
    from mdafuse.io.pair import IMAGE_KIND, load_pair
    from mdafuse.scoring import score_slices

    fuser = _WORKER.get("fuser")
    # the first pair of each process gets an untimed warm-up call per method, so one-off costs
    # (torch kernels, caches) do not land on its time
    warm_up, _WORKER["warm"] = not _WORKER.get("warm"), True
    prepared = load_pair(pair.mr, pair.functional, IMAGE_KIND)
    mr, fn = prepared.mr[0], prepared.functional[0]
    fy = luminance(fn)
    rows, fused_images = [], {}
    for method in methods:
        fuse = fuser.fuse if method == MDAFUSE else (lambda a, b, m=method: fuse_color(m, a, b))
        if warm_up:
            fuse(mr, fn)
        t0 = time.perf_counter()
        fused = fuse(mr, fn)
        seconds = time.perf_counter() - t0
        values = score_slices(mr[None], fy[None], luminance(fused)[None], list(metric_names))[0]
        rows.append({"method": method, **dict(zip(metric_names, map(float, values))), "seconds": seconds})
        if keep:
            fused_images[method] = fused
    return rows, ({"mr": mr, "functional": fn, "fused": fused_images} if keep else {})


def run_benchmark(
    dataset: str | Path,
    out: str | Path,
    methods: Sequence[str] | None = None,
    limit: int | None = None,
    split: str = "test",
    weights: str | Path | None = None,
    device: str = "cpu",
    jobs: int = 1,
) -> pa.Table:
    """Fuse every pair with every method, score it and write the results to ``out``.

    Args:
        dataset: dataset folder or name; see :func:`resolve_pairs`.
        out: output folder (created); receives ``metrics.parquet``, ``summary.md``,
            ``comparison.png`` and ``metrics_chart.png``.
        methods: names from :func:`available_methods`; all of them (MdAFuse first) by default.
        limit: benchmark only the first ``limit`` pairs (>= 1) of the split.
        split: ``"test"`` (default), ``"train"`` or ``"all"``; see :func:`resolve_pairs`.
        weights: MdAFuse safetensors weights; when None, the shipped weights for the dataset's
            functional modality (:data:`mdafuse.model.weights.MODALITY_WEIGHTS`).
        device: torch device for MdAFuse.
        jobs: worker processes, each scoring whole pairs with ``cpu_count // jobs`` threads
            (1: in this process). The table is the same for any ``jobs`` (metrics up to float
            rounding of the network on other thread counts); ``seconds`` are then times within a
            worker, comparable between methods of one run.

    Returns:
        The table written to ``metrics.parquet``: one row per (pair, method).

    Raises:
        ValueError: unknown method, bad ``limit``, ``split`` or ``jobs``, unreadable or mismatched images.
        FileNotFoundError: dataset or weights not found.
    """
    from tqdm.auto import tqdm

    from mdafuse.metrics import METRICS

    valid = available_methods()
    methods = list(dict.fromkeys(valid if methods is None else methods))
    unknown = [m for m in methods if m not in valid]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty list of {valid}; got unknown {unknown or methods}")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive integer; got {limit}")
    if int(jobs) != jobs or jobs < 1:
        raise ValueError(f"jobs must be a positive integer; got {jobs}")
    name, pairs = resolve_pairs(dataset, split)
    if limit is not None:
        pairs = pairs[: int(limit)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    sha = version = None
    modality = MODALITY_FOLDERS[name]
    if MDAFUSE in methods:
        from mdafuse.model.weights import default_weights_path, file_sha256, read_metadata, resolve_weights

        weights = resolve_weights(weights) if weights is not None else default_weights_path(modality)
        sha, version = file_sha256(weights), read_metadata(weights).get("version", "unknown")
    jobs = min(int(jobs), len(pairs))
    logger.info("benchmark %s: %d pairs x %d methods, %d job(s) -> %s", name, len(pairs), len(methods), jobs, out)

    metric_names = list(METRICS)
    examples = set(_example_indices(len(pairs)))
    setup = (weights if MDAFUSE in methods else None, device)
    progress = tqdm(total=len(pairs), desc=f"benchmark {name}", unit="pair")
    results: dict[int, tuple[list[dict], dict]] = {}
    if jobs == 1:
        _init_worker(*setup, threads=None)
        try:
            for i, pair in enumerate(pairs):
                results[i] = _score_pair(pair, methods, metric_names, keep=i in examples)
                progress.update()
        finally:
            _WORKER.clear()  # do not keep the model alive after the run
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // jobs)
        # BLAS pools are sized when a worker imports numpy, before its initializer runs
        with threads_for_children(threads), ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(*setup, threads)
        ) as pool:
            futures = {pool.submit(_score_pair, pair, methods, metric_names, i in examples): i for i, pair in enumerate(pairs)}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    progress.update()
            except BaseException:
                # a bad pair (or Ctrl-C) stops the run now, not after every queued pair
                for future in futures:
                    future.cancel()
                raise
    progress.close()

    columns: dict[str, list] = {k: [] for k in ("dataset", "pair", "series", "method", *metric_names, "seconds", "weights_sha256")}
    shown: list[dict] = []
    for i, pair in enumerate(pairs):
        rows, fused_images = results[i]
        for row in rows:
            row.update(dataset=name, pair=pair.name, series=pair.series, weights_sha256=sha if row["method"] == MDAFUSE else None)
            for key in columns:
                columns[key].append(row[key])
        if i in examples:
            shown.append({"pair": pair.name, **fused_images})

    schema = pa.schema(
        [("dataset", pa.string()), ("pair", pa.string()), ("series", pa.string()), ("method", pa.string())]
        + [(k, pa.float64()) for k in metric_names]
        + [("seconds", pa.float64()), ("weights_sha256", pa.string())],
        metadata={
            b"mdafuse.benchmark": json.dumps(
                {"dataset": name, "split": split, "pairs": len(pairs), "methods": methods, "weights": version, "weights_sha256": sha, "device": device}
            ).encode()
        },
    )
    table = pa.Table.from_pydict(columns, schema=schema)
    pq.write_table(table, out / "metrics.parquet")
    (out / "summary.md").write_text(summarise(table))
    plot_comparison(shown, methods, MODALITY_FOLDERS[name], out / "comparison.png")
    plot_metrics_chart(table, out / "metrics_chart.png")
    logger.info("benchmark %s: wrote %d rows to %s", name, table.num_rows, out)
    return table
