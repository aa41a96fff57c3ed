"""snapcopy's operator command line: a thin client of the function app's HTTP API."""

from snapcopy_cli.main import main

__all__ = ["main"]
