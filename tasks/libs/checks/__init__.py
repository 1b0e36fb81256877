"""What `invoke doctor` and `invoke stack.check` check, offline or before a run.

The host and its tools (doctor, and quietly before e2e.setup): preflight.py, kindhost.py (what
kind's provider needs), skew.py (versions), enginefacts.py (`<engine> info` kept between runs),
checkresult.py (a check's result). The stack (stack.check): validate.py (objects against their
schemas), crossrefs.py, apirules.py, crdschema.py (custom resources against their CRD),
buildcontext.py (builds), drift.py and nodeversion.py (the source's revision, the cluster's
Kubernetes version)."""
