"""Evaluation of fusion methods: the benchmark of MdAFuse against classical baselines."""

from mdafuse.evaluation.benchmark import run_benchmark, summarise

__all__ = ["run_benchmark", "summarise"]
