"""Masking secrets: in a command as it is shown and logged, and in a folder of exported logs, in place.

`kind export logs` (pkg/cluster/provider.go CollectLogs) copies every node's /var/log
(pod and container logs included) and its journal, kubelet and containerd logs, so what
the workloads printed (a database URL with its password, a token in a debug line)
lands in the diagnostics as is. This rewrites each text file with the secrets masked.
"""

import os
import re
import shlex
import tempfile
from pathlib import Path

SECRET_NAME_RE = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|credential|private", re.I)
MASK = "***"

# Files larger than this are not read into memory; their content is replaced by a note,
# since a file that cannot be masked must not be kept with the secrets in it.
DEFAULT_MAX_BYTES = 64 * 1024**2
# Binary files (archives, images, core dumps) are left alone: a NUL byte in the first
# block is the test git and grep use to call a file binary.
SNIFF_BYTES = 8192


def mask_folder(folder, mask, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Apply mask(text) -> text to every text file under folder, in place.

    Returns {"masked": [...], "binary": [...], "too_large": [...]}: the files changed, the
    binary files left alone, and the files over max_bytes whose content was replaced by a
    note. Symbolic links are not followed. Bytes that are not UTF-8 are kept as they are.
    """
    found = {"masked": [], "binary": [], "too_large": []}
    root = Path(folder)
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        size = path.stat().st_size
        if size > max_bytes:
            _replace(
                path,
                f"[kindling: this file had {size} bytes, more than the {max_bytes} that are "
                "masked; removed so that no secret in it is kept]\n",
            )
            found["too_large"].append(path)
            continue
        with open(path, "rb") as handle:
            data = handle.read()
        if b"\0" in data[:SNIFF_BYTES]:
            found["binary"].append(path)
            continue
        text = data.decode("utf-8", "surrogateescape")
        masked = mask(text)
        if masked != text:
            _replace(path, masked)
            found["masked"].append(path)
    return found


def _replace(path: Path, text: str) -> None:
    """Write text over path atomically, keeping its permissions (diagnostics are private)."""
    mode = path.stat().st_mode & 0o777
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def mask_argv(argv, secrets=()) -> list:
    """The argument list as it may be shown: secret-looking build args and known secret values hidden."""
    shown = []
    for arg in argv:
        arg = str(arg)
        name, sep, value = arg.partition("=")
        if sep and value and SECRET_NAME_RE.search(name) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            arg = f"{name}={MASK}"
        for secret in secrets:
            if secret and len(secret) >= 4:
                arg = arg.replace(secret, MASK)
        shown.append(arg)
    return shown


def display(argv, env_overrides=None, secrets=()) -> str:
    # The environment is masked as arguments are: a DB_PASSWORD=... in a command's env is never shown.
    shown_env = mask_argv([f"{k}={v}" for k, v in (env_overrides or {}).items()], secrets)
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, _, v in (item.partition("=") for item in shown_env))
    text = shlex.join(mask_argv(argv, secrets))
    return f"{prefix} {text}" if prefix else text
