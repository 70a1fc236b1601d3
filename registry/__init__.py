"""corral's service registry: register instances, find them, watch them.

A library on its own: any Python service can use it to register itself
and follow others, in a JSON file (Kratos compatible) or in etcd.
"""

from registry.backend import Registry, open_registry
from registry.errors import (
    RegistryCorrupt,
    RegistryError,
    RegistryLocationError,
    RegistryUnavailable,
    RegistryWriteError,
    WatcherStopped,
)
from registry.file import FileRegistry
from registry.instance import ServiceInstance, same_instances, this_host
from registry.watch import ChangeSource, Lease, Watcher

__all__ = [
    "ChangeSource",
    "FileRegistry",
    "Lease",
    "Registry",
    "RegistryCorrupt",
    "RegistryError",
    "RegistryLocationError",
    "RegistryUnavailable",
    "RegistryWriteError",
    "ServiceInstance",
    "Watcher",
    "WatcherStopped",
    "open_registry",
    "same_instances",
    "this_host",
]
