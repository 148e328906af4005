"""fcnx's version, read once from the installed distribution's metadata (``pyproject.toml`` is the one place it is written)."""

from __future__ import annotations

import importlib.metadata

__version__ = importlib.metadata.version("fcnx")
