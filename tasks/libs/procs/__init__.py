"""Running external commands: runner.py (the Runner every adapter uses)."""
