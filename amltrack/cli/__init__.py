"""The ``amltrack`` command line: a thin layer over the read API."""

from ._main import main

__all__ = ["main"]
