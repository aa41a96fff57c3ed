"""Table Storage, partition kind by partition kind (see shared/store.py)."""
