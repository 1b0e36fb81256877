"""A registry host (`name[:port]`, `[v6]:port`): its name and port, and whether it names this
machine's loopback. Pure."""

import ipaddress


def split_host(host: str) -> tuple:
    """A registry host's name and port: `[::1]:5000` -> ("::1", 5000); `localhost` -> ("localhost", None)."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, colon, port = host.rpartition(":")
        if not colon:
            name, port = host, ""
    return name, int(port) if port.isdigit() else None


def is_loopback(host: str) -> bool:
    """Whether a registry host (`name[:port]`) names this machine's loopback: localhost, 127.0.0.0/8,
    ::1 (also as ::ffff:127.x.y.z), and the unspecified 0.0.0.0 and ::, which a connect on Linux sends to
    the loopback too. What the name means inside a container is what matters: the same words there name
    the container itself."""
    name = split_host(host)[0].lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified
