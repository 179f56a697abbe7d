"""Evaluation of fusion methods: the benchmark of MdAFuse against classical baselines.

:mod:`.run` runs it (fuse, score, write), :mod:`.statistics` compares methods, :mod:`.report`
writes ``summary.md`` and :mod:`.plots` the figures; :mod:`.methods` names the methods.
"""

from mdafuse.evaluation.report import summarise
from mdafuse.evaluation.run import run_benchmark

__all__ = ["run_benchmark", "summarise"]
