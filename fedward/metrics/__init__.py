"""Summable evaluation counts, confusion-matrix figures and confidence intervals."""
