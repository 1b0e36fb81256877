"""Stack profiles: named changes to a stack, applied when the stack file is read.

One stack file can then serve the machines it runs on: `profiles: {offline: {...}}` holds what a
machine with no registry changes (prebuilt images loaded from the host, a build's own Containerfile)
and `E2E_PROFILE=offline` applies it. As with Skaffold's profiles, a profile is a partial stack laid
over the stack: mappings are merged key by key, any other value replaces the stack's, and `null`
removes the key. Paths in a profile are relative to the stack file, as every path of it is.

A profile changes services; it adds none. deploy.<service> tasks are made from the stack's
services before a profile can be chosen on the command line, so a service only a profile had would
have no task.
"""

from ..errors import KindlingError
from .stackfile import Checker, show

PROFILE_KEY = "profiles"
NOT_IN_PROFILE = {"name", PROFILE_KEY}


def parse_names(value, origin: str) -> tuple:
    """`a,b` (or a list, from a config file) -> ("a", "b"); empty -> ()."""
    if value in (None, ""):
        return ()
    names = value if isinstance(value, (list, tuple)) else str(value).split(",")
    if not all(isinstance(name, str) for name in names):
        raise KindlingError(f"{origin}: {value!r} must be profile names, e.g. offline or offline,ci")
    return tuple(name.strip() for name in names if name.strip())


def apply(c: Checker, document: dict, names: tuple, origin: str, top_keys: set) -> dict:
    """The document with each named profile laid over it, in order; without `profiles:`."""
    profiles = document.get(PROFILE_KEY, {}) or {}
    if not isinstance(profiles, dict):
        c.fail(
            PROFILE_KEY,
            "must be a mapping of profile name to a partial stack",
            "e.g. profiles: {offline: {...}}",
        )
    merged = {key: value for key, value in document.items() if key != PROFILE_KEY}
    for name, profile in profiles.items():
        where = f"{PROFILE_KEY}.{name}"
        c.name(name, where)
        c.mapping(profile if profile is not None else {}, where, top_keys - NOT_IN_PROFILE)
    for name in names:
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            c.fail(
                PROFILE_KEY,
                f"{origin} names profile {show(name)}, which the stack does not have (it has: {known})",
                f"add `{PROFILE_KEY}: {{{name}: {{...}}}}` to the stack, or choose one it has",
            )
        profile = profiles[name] or {}
        services = profile.get("services") or {}
        if not isinstance(services, dict):
            c.fail(f"{PROFILE_KEY}.{name}.services", "must be a mapping of service name to changes")
        base_services = merged.get("services") if isinstance(merged.get("services"), dict) else {}
        for service in services:
            if service not in base_services:
                c.fail(
                    f"{PROFILE_KEY}.{name}.services.{service}",
                    "is not a service of the stack; a profile changes services, it adds none",
                    f"declare {service} under `services:` and change it in the profile",
                )
        merged = overlay(merged, profile)
    return merged


def overlay(base, changes):
    """changes laid over base: mappings merged key by key, a null removes the key, anything else
    replaces what base had."""
    if not isinstance(base, dict) or not isinstance(changes, dict):
        return changes
    result = dict(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = overlay(base.get(key), value)
    return result
