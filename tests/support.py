"""Small helpers shared by the tests."""

from __future__ import annotations

import hashlib
from pathlib import Path


def hash_tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, keyed by relative path: proves nothing changed."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
