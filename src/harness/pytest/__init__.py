"""Test support that tests, fixtures and scripts import: the stack a run uses, proxies of a
test's own, clients and readers, and the failure-log plugin."""
