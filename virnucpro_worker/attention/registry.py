"""Finding attention backends and choosing one by name.

Built-ins are registered by dotted name exactly as third-party plugins are (as llm does), then
the `virnucpro.attention` entry points are loaded; one plugin manager per process. A plugin that
registers a backend under a name already taken, a built-in's included, is refused.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from types import MappingProxyType

import pluggy

from ..errors import UserError
from .hookspecs import ENTRY_POINT_GROUP, PROJECT, AttentionBackend, AttentionBackendSpec

DEFAULT_BACKEND = "flash-varlen"
V1_BACKEND = "v1-bmm"
BUILTIN_PLUGINS = ("virnucpro_flash_varlen", "virnucpro_v1_bmm")


def new_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(AttentionBackendSpec)
    for name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    manager.check_pending()
    return manager


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, built on first use."""
    return new_plugin_manager()


def collect_backends(manager: pluggy.PluginManager) -> dict[str, AttentionBackend]:
    backends: dict[str, AttentionBackend] = {}

    def register(backend: AttentionBackend) -> None:
        if backend.name in backends:
            raise UserError(f"attention backend '{backend.name}' is registered twice")
        backends[backend.name] = backend

    manager.hook.register_attention_backends(register=register)
    return backends


@functools.cache
def available_backends() -> Mapping[str, AttentionBackend]:
    return MappingProxyType(collect_backends(plugin_manager()))


def get_backend(
    name: str, backends: Mapping[str, AttentionBackend] | None = None
) -> AttentionBackend:
    backends = available_backends() if backends is None else backends
    if name not in backends:
        raise UserError(
            f"unknown attention backend '{name}' (available: {', '.join(sorted(backends))})"
        )
    return backends[name]
