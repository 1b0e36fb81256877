"""Running external commands: runner.py (the Runner every adapter uses), pipeside.py (one side of a
pipe), proctree.py (a command's process tree, stopped whole), masking.py (secrets kept out of what is
shown), commandlog.py (the command log), fakerunner.py (a Runner that starts no process, for tests)."""
