"""The stack file, read into a Stack (pure): model.py (Stack, Service, load_stack), stackfile.py (safe
YAML reading, ${VAR} expansion, the field checks every section shares), stacksections.py (registry,
test), and one module per part of a service: buildspec.py (`build:`), baseimages.py, buildmounts.py,
hostfacts.py (the host facts build args expand), coveragespec.py (`coverage:`), runspec.py (`run:`)."""
