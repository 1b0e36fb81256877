"""The stack file, read into a Stack (pure): model.py (Stack, Service, load_stack)."""
