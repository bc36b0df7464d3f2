"""Efficiency techniques from the thesis, as plain functions first (wired into tasks by later issues)."""
