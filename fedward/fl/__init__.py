"""The Flower app: exactly the code bundle hospitals approve and run.

``client_app`` and ``server_app`` translate between Flower messages and plain
Python objects; ``protocol`` defines every record a hospital sends. Nothing here
imports simulation, inference, reporting, deployment or cli, so editing those
never changes the bundle's hash (``fab-include`` in pyproject.toml).
"""
