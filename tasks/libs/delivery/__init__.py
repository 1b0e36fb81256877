"""Delivery modes: where built images go so the nodes can run them.

One interface (`base.Delivery`) and one module per mode, each a frozen value that says which steps
the mode adds to the plan, which pull policy its images get, what the cluster needs for it, and
performs its own steps:

- archive.py: saved from the engine and loaded into each node (`kind load`), the default;
- localregistry.py: pushed to kind's local registry container (`--load-via registry`);
- registry.py: pushed to the stack's registry, for a Kind cluster kindling makes or an existing one.

settings.py chooses the mode once per run; nothing else asks which mode it is.
"""

from .archive import ArchiveDelivery
from .base import Delivery, DeliveryMode
from .localregistry import LocalRegistryDelivery
from .registry import RegistryDelivery, loopback_refusal

__all__ = [
    "ArchiveDelivery",
    "Delivery",
    "DeliveryMode",
    "LocalRegistryDelivery",
    "RegistryDelivery",
    "loopback_refusal",
]
