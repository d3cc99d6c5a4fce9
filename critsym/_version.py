"""The installed version of critsym (single source: ``version`` in pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("critsym")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
