"""Constants and small functions the mock-tier tests share."""

from __future__ import annotations

import hashlib

CLIENT_KEY = "sk-client-key-for-tests-5d1e"


def redacted(value: str) -> str:
    """How the mock logs a secret header: a fingerprint, never the value."""
    return f"<redacted sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}>"
