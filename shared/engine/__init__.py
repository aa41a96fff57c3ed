"""The engine: the imperative shell's parts, one protocol each (see shared/service.py)."""
