"""The Switchyard harness: builds, runs and tests the switchyard proxy."""
