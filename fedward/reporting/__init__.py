"""The study report and its figures, made from a run folder only."""
