"""Tracking: MLflow logging of finished experiments (``mlflow``), logging a run directory
later (``python -m kibs_mc.tracking RUN_DIR``), and the ``kibs-mc-compare`` command
(``compare``)."""

from kibs_mc.tracking.mlflow import log_experiment, log_run_dir

__all__ = ["log_experiment", "log_run_dir"]
