"""snapcopy: replicates Azure managed-disk incremental snapshots to other regions.

All logic lives in this package; `function_app.py` only wires triggers to it.
"""
