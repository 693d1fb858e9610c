"""Finding attention backends (built-ins and entry points) and choosing one by name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata
from types import ModuleType

import pluggy

from ..errors import UserError
from .hookspecs import ENTRY_POINT_GROUP, PROJECT, AttentionBackend, AttentionBackendSpec

DEFAULT_BACKEND = "flash-varlen"
V1_BACKEND = "v1-bmm"
V1_ENV = "VIRNUCPRO_V1_ATTENTION"


def plugin_manager() -> pluggy.PluginManager:
    """Built-ins first (registered explicitly, so a plain checkout works), then entry points."""
    import virnucpro_flash_varlen
    import virnucpro_v1_bmm

    builtins = {"flash-varlen": virnucpro_flash_varlen, "v1-bmm": virnucpro_v1_bmm}
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(AttentionBackendSpec)
    for name, module in builtins.items():
        # Named like their own entry points, which load_setuptools_entrypoints then skips.
        manager.register(module, name=name)
    _refuse_impostors(builtins)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    manager.check_pending()
    return manager


def _refuse_impostors(builtins: Mapping[str, ModuleType]) -> None:
    """pluggy would skip, silently, another package's entry point named like a built-in."""
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        builtin = builtins.get(entry_point.name)
        if builtin is not None and entry_point.value != builtin.__name__:
            raise UserError(
                f"attention backend entry point '{entry_point.name}' ({entry_point.value}) "
                "has the name of a built-in backend"
            )


def collect_backends(manager: pluggy.PluginManager) -> dict[str, AttentionBackend]:
    backends: dict[str, AttentionBackend] = {}

    def register(backend: AttentionBackend) -> None:
        if backend.name in backends:
            raise UserError(f"attention backend '{backend.name}' is registered twice")
        backends[backend.name] = backend

    manager.hook.register_attention_backends(register=register)
    return backends


def available_backends() -> dict[str, AttentionBackend]:
    return collect_backends(plugin_manager())


def get_backend(
    name: str, backends: Mapping[str, AttentionBackend] | None = None
) -> AttentionBackend:
    backends = available_backends() if backends is None else backends
    if name not in backends:
        raise UserError(
            f"unknown attention backend '{name}' (available: {', '.join(sorted(backends))})"
        )
    return backends[name]


def choose_backend_name(
    attention: str | None = None,
    v1_attention: bool = False,
    environ: Mapping[str, str] | None = None,
    configured: str | None = None,
) -> str:
    """Precedence: --attention, --v1-attention, VIRNUCPRO_V1_ATTENTION=true, config, default."""
    environ = os.environ if environ is None else environ
    if attention:
        return attention
    if v1_attention:
        return V1_BACKEND
    if environ.get(V1_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return V1_BACKEND
    return configured or DEFAULT_BACKEND
