"""The Ray jobs: cohort fusion (:mod:`.fuse_cohort`) and lesion tracking (:mod:`.track_lesions`).

Both run on one job runtime (:mod:`.runtime`: output layout, resume, summaries, Ray start-up and
the worker pool plan). This is the only package of the library that imports Ray; the top-level
``jobs/`` scripts of the repository are thin entry points into it (``python -m jobs.fuse_cohort``,
``ray job submit -- python -m jobs.fuse_cohort``).
"""
