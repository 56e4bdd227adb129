"""What the front doors (noxfile.py, tasks.py) compose: the Invoke tasks' work, nox support
and coverage."""
