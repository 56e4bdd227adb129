"""Processes, stacks and their configuration: what starts, watches and stops the servers."""
