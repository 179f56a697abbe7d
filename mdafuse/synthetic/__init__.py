"""Synthetic data with known truth: the longitudinal phantom (:mod:`.phantom`) and the demo DICOM
cohort built from it (:mod:`.demo_cohort`). Used by the demos, tests and benchmarks, never by the
readers: nothing below this package imports it.
"""
