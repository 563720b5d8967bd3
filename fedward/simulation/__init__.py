"""Local multi-hospital simulation: demo data, partitioners and the runner."""
