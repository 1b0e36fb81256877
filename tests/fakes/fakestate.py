"""Shared state for the `kind` and `kubectl` test fakes.

Layout under $KINDLING_FAKE_STATE:
    lock                                  flock(2) target for every read-modify-write
    calls.jsonl                           one JSON line per fake invocation
    scenario.json                         optional knobs (see scenario_* below)
    clusters/<name>/cluster.json          nodes, port, loaded images, stored API objects
    clusters/<name>/nodes/<node>/crictl-images.json   mounted read-only into the node
    clusters/<name>/nodes/<node>/crictl-images.txt    container at /kind-state
"""
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import traceback

import yaml

KIND_VERSION = "kind v0.20.0 go1.20.4 linux/amd64"
# kind v0.20.0 release notes: default node image is kindest/node:v1.27.3
NODE_IMAGE = "kindest/node:v1.27.3"
K8S_SERVER_VERSION = "v1.27.3"
KUBECTL_VERSION = "v1.29.0"
FAKE_NODE_IMAGE = "localhost/kindling-fake/node:1"
STATE_LABEL = "io.x-k8s.kindling-fake.state"


class Fail(Exception):
    """Exit with `rc` after printing `msg` to stderr."""

    def __init__(self, msg, rc=1):
        super().__init__(msg)
        self.msg, self.rc = msg, rc


# ---------------------------------------------------------------- state folder

def state_dir():
    return os.environ["KINDLING_FAKE_STATE"]


def state_id():
    return hashlib.sha256(os.path.realpath(state_dir()).encode()).hexdigest()[:12]


@contextlib.contextmanager
def locked():
    os.makedirs(state_dir(), exist_ok=True)
    with open(os.path.join(state_dir(), "lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default


def write_atomic(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_json(path, data):
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True))


# ------------------------------------------------------------------- scenario

def scenario():
    return read_json(os.path.join(state_dir(), "scenario.json"), {}) or {}


def scenario_fails(key):
    """True if this call must fail; numeric counts are decremented in the file."""
    path = os.path.join(state_dir(), "scenario.json")
    with locked():
        data = read_json(path, {}) or {}
        val = (data.get("fail") or {}).get(key)
        if val is True:
            return True
        if isinstance(val, (int, float)) and not isinstance(val, bool) and val > 0:
            data["fail"][key] = int(val) - 1
            write_json(path, data)
            return True
    return False


def scenario_delay(key):
    secs = float((scenario().get("delays") or {}).get(key, 0) or 0)
    if secs > 0:
        time.sleep(secs)
    return secs


# ------------------------------------------------------------------- clusters

def cluster_dir(name):
    return os.path.join(state_dir(), "clusters", name)


def load_cluster(name):
    return read_json(os.path.join(cluster_dir(name), "cluster.json"))


def save_cluster(c):
    write_json(os.path.join(cluster_dir(c["name"]), "cluster.json"), c)


def list_clusters():
    root = os.path.join(state_dir(), "clusters")
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if load_cluster(n))


def node_dir(cluster, node):
    return os.path.join(cluster_dir(cluster), "nodes", node)


def write_crictl_files(cluster_name, node):
    """Keep the node's image list in `crictl images -o json` shape (CRI ListImagesResponse
    marshalled by protojson with unpopulated fields; cri-tools cmd/crictl/image.go)."""
    images = sorted(node["images"], key=lambda i: (i["repoTags"] or [""])[0])
    doc = {"images": [dict(id=i["id"], repoTags=i["repoTags"], repoDigests=i.get("repoDigests", []),
                           size=str(i["size"]), uid=None, username="", spec=None, pinned=False)
                      for i in images]}
    rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
    for i in images:
        for tag in i["repoTags"]:
            repo, _, t = tag.rpartition(":")
            rows.append((repo, t, i["id"].split(":")[-1][:13], human_size(int(i["size"]))))
    d = node_dir(cluster_name, node["name"])
    write_atomic(os.path.join(d, "crictl-images.json"), json.dumps(doc, indent=2) + "\n")
    write_atomic(os.path.join(d, "crictl-images.txt"), format_table(rows, pad=19) + "\n")


def human_size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}"
        n /= 1000.0


def format_table(rows, pad=3):
    rows = [[str(c) for c in r] for r in rows]
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i] + pad) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("".join(cells).rstrip())
    return "\n".join(out)


# ------------------------------------------------------------- image references

def parse_ref(ref):
    """Split like github.com/distribution/reference ParseNormalizedNamed (what containerd's
    CRI plugin and `ctr images import` use): the first path component is a registry only if it
    contains '.' or ':' or is 'localhost'; otherwise docker.io (+ library/ for one-part names)."""
    name, _, digest = ref.partition("@")
    tag = None
    colon, slash = name.rfind(":"), name.rfind("/")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    return domain, path, tag, digest or None


def normalize_image(ref):
    domain, path, tag, digest = parse_ref(ref)
    if digest:  # reference.ParseDockerRef drops the tag when a digest is present
        return f"{domain}/{path}@{digest}"
    return f"{domain}/{path}:{tag or 'latest'}"


# ------------------------------------------------------------------ utilities

def parse_duration(text, default=None):
    """Go time.ParseDuration subset ("90s", "2m", "1m30s", "500ms", "0")."""
    if text is None or text == "":
        return default
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise Fail(f'error: invalid argument "{text}" for "--timeout" flag: time: invalid duration "{text}"')
    return sum(float(a) * units[b] for a, b in parts)


def fake_b64(seed):
    return base64.b64encode(f"fake-{seed}-not-a-real-credential".encode()).decode()


def kubeconfig_path(explicit=None):
    """kind: --kubeconfig, else first $KUBECONFIG entry, else ~/.kube/config
    (kind.sigs.k8s.io/docs/user/quick-start/#setting-kubeconfig)."""
    if explicit:
        return explicit
    env = os.environ.get("KUBECONFIG", "")
    for p in env.split(os.pathsep):
        if p:
            return p
    return os.path.join(os.path.expanduser("~"), ".kube", "config")


def read_kubeconfig(path):
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        data = {}
    for key in ("clusters", "contexts", "users"):
        data[key] = data.get(key) or []
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Config")
    data.setdefault("preferences", {})
    data.setdefault("current-context", "")
    return data


def write_kubeconfig(path, data):
    # kind writes kubeconfig files with mode 0600 (pkg/cluster/internal/kubeconfig)
    write_atomic(path, yaml.safe_dump(data, default_flow_style=False), mode=0o600)


# ------------------------------------------------------------------ call log

def write_out(text):
    """stdout write that survives a closed pipe (`kubectl get ... | head -1`): the command still finishes
    its state changes instead of dying half way."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")


def run_main(tool, main):
    """Run main(argv) -> rc and append the call record at exit, whatever happens."""
    if not os.environ.get("KINDLING_FAKE_STATE"):
        sys.stderr.write(f"fake {tool}: KINDLING_FAKE_STATE is not set\n")
        sys.exit(2)
    start, rc = time.time(), 1
    try:
        rc = main(sys.argv[1:]) or 0
    except Fail as e:
        if e.msg:
            sys.stderr.write(e.msg.rstrip("\n") + "\n")
        rc = e.rc
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:  # a bug in the fake itself: make it loud and distinct
        traceback.print_exc()
        sys.stderr.write(f"fake {tool}: internal error\n")
        rc = 70
    finally:
        try:
            sys.stdout.flush()
        except Exception:
            pass
        entry = {"tool": tool, "argv": sys.argv[1:], "start": start, "end": time.time(), "rc": rc,
                 "provider": os.environ.get("KIND_EXPERIMENTAL_PROVIDER")}
        with locked():
            with open(os.path.join(state_dir(), "calls.jsonl"), "a") as fh:
                fh.write(json.dumps(entry) + "\n")
    sys.exit(rc)


def parse_flags(argv, spec, aliases, cmd, prog):
    """Cobra/pflag-like parsing. spec: canonical flag -> 'val' | 'multi' | 'bool' | ('opt', default).
    'array' is repeatable without comma splitting (pflag StringArray). Flags may appear anywhere;
    '--' ends flags. Returns (opts, positionals)."""
    opts, pos, i = {}, [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos.extend(argv[i + 1:])
            break
        if a.startswith("--"):
            name, eq, val = a.partition("=")
            shown = name
        elif a.startswith("-") and len(a) > 1:
            name, rest = a[:2], a[2:]
            eq, val = ("=", rest[1:]) if rest.startswith("=") else (("=", rest) if rest else ("", ""))
            shown = f"'{a[1]}' in {a}"
        else:
            pos.append(a)
            i += 1
            continue
        canon = aliases.get(name, name)
        kind = spec.get(canon)
        if kind is None:
            what = f"unknown flag: {name}" if a.startswith("--") else f"unknown shorthand flag: {shown}"
            raise Fail(f"{prog}{what}\nSee '{cmd} --help' for usage.")
        if kind == "bool":
            v = val if eq else "true"
            if v not in ("true", "false", "1", "0", "True", "False"):
                raise Fail(f'{prog}invalid argument "{v}" for "{canon}" flag: strconv.ParseBool: parsing "{v}": invalid syntax')
            opts[canon] = v in ("true", "1", "True")
        elif isinstance(kind, tuple):
            opts[canon] = val if eq else kind[1]
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise Fail(f"{prog}flag needs an argument: {shown}")
                val = argv[i]
            if kind == "multi":  # pflag StringSlice: repeatable and comma-separated
                opts.setdefault(canon, []).extend(v for v in val.split(",") if v)
            elif kind == "array":
                opts.setdefault(canon, []).append(val)
            else:
                opts[canon] = val
        i += 1
    return opts, pos
