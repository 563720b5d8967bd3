"""Local training and evaluation: loops and the Site algorithm (no Flower import)."""
