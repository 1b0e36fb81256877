"""A thin wrapper around a real tool (kind, kubectl), for fault injection and call records.

It runs the real binary (the next one on PATH after this folder) with the same
arguments, stdin, stdout and stderr, and exits with its code. Before that it can
delay or fail, as the test asks in $KINDLING_WRAP_STATE/faults.json:

    {"delays": {"kind.load": 30}, "fail": {"kind.create": 1}}

Keys are "<tool>.<first non-flag argument>" (kind.create, kind.load, kubectl.apply,
kubectl.rollout, ...). A failure exits 1 with "injected failure" on stderr, and counts
down ("fail": N fails the next N calls). Each call is recorded as one JSON line in
$KINDLING_WRAP_STATE/calls.jsonl: argv, start, end, exit code and the kind provider.
Nothing else about the tool is changed: what it does is the real binary's.
"""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def real_binary(tool: str) -> str:
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and Path(p).resolve() != HERE]
    found = shutil.which(tool, path=os.pathsep.join(rest))
    if not found:
        sys.exit(f"{tool} (wrapped): no real {tool} on PATH after {HERE}")
    return found


def verb(argv) -> str:
    skip_value = {"--kubeconfig", "--context", "-n", "--namespace", "--name"}
    skipping = False
    for arg in argv:
        if skipping:
            skipping = False
        elif arg in skip_value:
            skipping = True
        elif not arg.startswith("-"):
            return arg
    return ""


def take_fault(state: Path, key: str):
    """(delay seconds, fail?) for this call; decrements a failure count under a lock."""
    path = state / "faults.json"
    if not path.exists():
        return 0.0, False
    with open(state / "faults.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        faults = json.loads(path.read_text() or "{}")
        delay = float((faults.get("delays") or {}).get(key, 0))
        remaining = int((faults.get("fail") or {}).get(key, 0))
        if remaining:
            faults["fail"][key] = remaining - 1
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(faults))
            tmp.replace(path)
        return delay, remaining > 0


def record(state: Path, entry: dict):
    with open(state / "calls.jsonl", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(entry) + "\n")


def main(tool: str) -> int:
    argv = sys.argv[1:]
    state = os.environ.get("KINDLING_WRAP_STATE")
    binary = real_binary(tool)
    if not state:
        os.execv(binary, [binary, *argv])
    state = Path(state)
    key = f"{tool}.{verb(argv)}"
    start = time.time()
    delay, fail = take_fault(state, key)
    code = 1
    try:
        if delay:
            time.sleep(delay)
        if fail:
            print(f"{tool}: injected failure ({key})", file=sys.stderr)
            return 1
        child = subprocess.Popen([binary, *argv])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: child.send_signal(signum))
        code = child.wait()
        return code
    finally:
        record(state, {"tool": tool, "argv": argv, "start": start, "end": time.time(), "exit": code,
                       "provider": os.environ.get("KIND_EXPERIMENTAL_PROVIDER", "")})
