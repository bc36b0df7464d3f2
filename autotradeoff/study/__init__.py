"""Optuna storage as the single source of truth: storage URLs (``storage``), the stored record's names
and helpers (``record``), and create/resume/reconcile (``resume``)."""

from autotradeoff.study.resume import create_or_resume, load_study, reconcile
from autotradeoff.study.storage import absolute_url, default_storage, open_storage, redact

__all__ = ["absolute_url", "create_or_resume", "default_storage", "load_study", "open_storage", "reconcile", "redact"]
