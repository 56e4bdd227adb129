"""What differs between the Python versions the harness supports (3.10 to 3.13), once."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 only
    import tomli as tomllib

__all__ = ["tomllib"]
