"""Output-path checks, run before any computation so that a bad path fails at once."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CritsymError

#: figure formats every matplotlib backend writes (chosen by the file extension)
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".eps", ".ps", ".jpg", ".jpeg")


class OutputPathError(CritsymError, ValueError):
    """An output file or directory that cannot be written."""


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...] = FIGURE_SUFFIXES
                      ) -> Path:
    """Check that ``path`` can be written as a file with one of ``suffixes``; return it.

    The parent directory must exist and be writable and ``path`` must not be a directory.
    """
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        kind = p.suffix or "(none)"
        raise OutputPathError(f"cannot write {str(p)!r}: unknown file type {kind!r}; "
                              f"use one of {', '.join(suffixes)}")
    if p.is_dir():
        raise OutputPathError(f"cannot write {str(p)!r}: it is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {str(p)!r}: directory {str(parent)!r} does not "
                              "exist; create it first")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise OutputPathError(f"cannot write {str(p)!r}: permission denied")
    return p


def check_output_dir(path: str | os.PathLike) -> Path:
    """Check that ``path`` is, or can be created as, a writable directory; create it; return it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"cannot write into {str(p)!r}: it is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create directory {str(p)!r}: {e.strerror}") from None
    if not os.access(p, os.W_OK):
        raise OutputPathError(f"cannot write into {str(p)!r}: permission denied")
    return p
