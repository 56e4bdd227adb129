"""The benchmark and the soak, and their reports."""
