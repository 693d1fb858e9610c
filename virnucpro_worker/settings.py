"""Settings, read once at the edge (the CLI, `load_models`, the queue's entry points) and passed
down as one typed object; nothing below reads the environment.

Each setting comes from, strongest first: the option (command line or function argument), the
`VIRNUCPRO_<NAME>` environment variable, the config file, the default. The config file is
`$VIRNUCPRO_CONFIG`, else `~/.config/virnucpro/config.toml`, with the names below as keys:

    attention = "flash-varlen"
    models = "/models/virnucpro"          # a model folder (models/model_files.py), or:
    esm = "/models/esm2_t36_3B_UR50D.pt"
    dnabert = "/models/DNABERT-S"
    classifier = "/models/500_model.pth"
    database_url = "postgresql://virnucpro@db/virnucpro"

The model set is taken whole from the strongest source that names one (`demo_models`, a
`models` folder, or `esm`/`dnabert`/`classifier`); explicit files are filled in key by key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .attention.registry import DEFAULT_BACKEND, V1_BACKEND
from .errors import UserError
from .files import sha256_of
from .models.model_files import ModelFiles
from .pipeline.parameters import JobParameters, ModelRequest
from .pipeline.regions import RegionRule
from .redact import redact_passwords, redact_url
from .sequences.fasta import InputLimits

DEFAULT_ESM = "esm2_t36_3B_UR50D"
MODEL_KEYS = ("demo_models", "models", "esm", "dnabert", "classifier")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Settings:
    demo_models: bool = False
    models: str | None = None
    esm: str | None = None
    dnabert: str | None = None
    classifier: str | None = None
    attention: str = DEFAULT_BACKEND
    device: str | None = None  # None: CUDA when available, else the CPU
    dtype: str | None = None  # None: bf16 on CUDA, fp32 on the CPU
    cache: str | None = None  # the demo models are built here once; default ~/.cache/virnucpro
    # Triton's compiled kernels (TRITON_CACHE_DIR); None: Triton's default, ~/.triton/cache.
    # A fresh folder costs each process seconds of compiling before its first block.
    triton_cache: str | None = None
    database_url: str | None = None  # default: SQLite in ~/.local/share/virnucpro
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue: str = "virnucpro"  # shards go to queue "<queue>-<chunk size>"
    shard_chunks: int = 40_000  # chunks per queued shard: about a minute on an H200
    # Bases of whole records prepared and embedded together. Results depend on it in their
    # last bits (which frames share a batch): a queued job cuts shards at these boundaries
    # so that its results equal `predict`'s with the same value.
    block_bases: int = 2_000_000
    shard_attempts: int = 3  # a shard that fails this often fails its job (kept with the job)
    shard_timeout: int = 6 * 3600  # seconds one attempt may take
    # A running shard not renewed for this long is run again; a queued one whose message has
    # not reached Redis after this long gets a new message.
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0  # how often a worker renews its leases
    database_patience: float = 300.0  # seconds a worker waits for an unreachable database
    max_input_bytes: int = 64 << 30
    max_record_length: int = 250_000_000
    config_file: str | None = None  # the file these settings were read from, if any
    config_sha256: str | None = None

    def model_files(self) -> ModelFiles:
        """The model set the settings name (the demo models are built on first use)."""
        if self.demo_models:
            from .models.demo import cached_demo_models  # builds models: needs torch

            return cached_demo_models(Path(self.cache))
        if self.models:
            return ModelFiles.in_folder(self.models)
        if self.dnabert and self.classifier:
            return ModelFiles.explicit(self.esm or DEFAULT_ESM, self.dnabert, self.classifier)
        if self.esm or self.dnabert or self.classifier:
            missing = [f"--{key}" for key in ("dnabert", "classifier") if not getattr(self, key)]
            raise UserError(
                f"incomplete model set: also give {' and '.join(missing)} (or use --models DIR)"
            )
        raise UserError(
            "no models: give --models DIR, or --dnabert DIR and --classifier FILE "
            "(or set them in the config file), or use --demo-models"
        )

    def job_parameters(
        self,
        chunk_size: int,
        models: ModelRequest,
        regions: RegionRule,
        *,
        queued: bool,
        embeddings: str | None = None,
    ) -> JobParameters:
        """What a job asks for: `chunk_size`, `models`, `regions` and the `embeddings` dtype
        (None: no features kept) with these settings' backend and block size; `queued` (run
        by the queue's workers): with their attempts and message lease."""
        parameters = JobParameters(
            chunk_size, self.attention, self.block_bases, models, regions, embeddings=embeddings
        )
        if not queued:
            return parameters
        return replace(parameters, attempts=self.shard_attempts, lease_seconds=self.lease_seconds)

    @property
    def limits(self) -> InputLimits:
        return InputLimits(self.max_input_bytes, self.max_record_length)

    def described(self) -> str:
        """The settings for a log line, passwords hidden."""
        values = {
            f.name: redact_url(value) if f.name.endswith("_url") and value else value
            for f in fields(self)
            if (value := getattr(self, f.name)) is not None
        }
        return ", ".join(f"{key}={value}" for key, value in values.items())


def environment_name(key: str) -> str:
    return f"VIRNUCPRO_{key.upper()}"


_KEYS = {f.name for f in fields(Settings)} - {"config_file", "config_sha256"}


def load_settings(options: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """`options`: setting names to values, None where not given (a `config` key names the
    config file); `environ`: the process environment."""
    config_path = _config_path(options.get("config"), environ)
    config = _read_config(config_path)
    levels = [
        ("option", {key: value for key, value in options.items() if key in _KEYS}),
        ("environment", _from_environment(environ)),
        (f"config file {config_path}", config),
    ]
    values: dict[str, Any] = {}
    for key in _KEYS - set(MODEL_KEYS):
        for where, level in levels:
            if level.get(key) is not None:
                values[key] = _typed(key, level[key])
                if key in _URL_SCHEMES:
                    _check_url(key, values[key], where)
                break
    values.update(_model_settings(levels))
    values = _with_home(values, environ)
    if config:
        values["config_file"] = str(config_path)
        values["config_sha256"] = sha256_of(config_path)
    return Settings(**values)


# The URL settings, the schemes each takes and what a URL looks like (for the error).
_URL_SCHEMES = {
    "redis_url": (
        ("redis", "rediss", "unix"),
        "redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///PATH",
    ),
    "database_url": (
        ("sqlite", "postgresql", "postgres"),
        "sqlite:///FILE or postgresql://USER@HOST:PORT/DATABASE",
    ),
}
_WHERE = {"redis_url": "--redis", "database_url": "--db"}


def _check_url(key: str, url: str, where: str) -> None:
    """A URL of the right kind, checked where it is read: a mistyped one is one line naming
    where it came from (its password hidden), not a traceback from the driver."""
    schemes, form = _URL_SCHEMES[key]
    source = {
        "option": _WHERE[key],
        "environment": environment_name(key),
    }.get(where, f"{where}: {key}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises)
    except ValueError as error:
        raise UserError(f"{source}: {redact_passwords(url)!r} is not a URL ({error})") from None
    if parts.scheme.split("+", 1)[0].lower() not in schemes or "://" not in url:
        raise UserError(f"{source}: {redact_passwords(url)!r} is not a URL of the form {form}")


def _config_path(option: str | None, environ: Mapping[str, str]) -> Path:
    explicit = option or environ.get("VIRNUCPRO_CONFIG")
    if explicit:
        path = Path(_expand_home(explicit, environ))
        if not path.is_file():
            raise UserError(f"{path}: VIRNUCPRO_CONFIG names a file that does not exist")
        return path
    config = environ.get("XDG_CONFIG_HOME") or f"{environ.get('HOME', '/')}/.config"
    return Path(config) / "virnucpro" / "config.toml"


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        settings = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    unknown = set(settings) - _KEYS
    if unknown:
        raise UserError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return settings


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    values = {
        key: environ[environment_name(key)] for key in _KEYS if environment_name(key) in environ
    }
    values = {key: value for key, value in values.items() if value != ""}
    if "attention" not in values and _typed(
        "v1_attention", environ.get("VIRNUCPRO_V1_ATTENTION", "")
    ):
        values["attention"] = V1_BACKEND  # the original refactor's switch
    return values


def _model_settings(levels: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The model keys of the strongest level that names a model set, explicit files filled in
    from weaker levels."""
    for where, level in levels:
        named = [
            key
            for key in MODEL_KEYS
            if level.get(key) is not None and _typed(key, level[key]) is not False
        ]
        if not named:
            continue
        kinds = {key if key in ("demo_models", "models") else "files" for key in named}
        if len(kinds) > 1:
            raise UserError(f"{where}: {', '.join(named)} name different model sets; give one")
        chosen = {key: _typed(key, level[key]) for key in named}
        if "files" in kinds:
            for _, weaker in levels:
                for key in ("esm", "dnabert", "classifier"):
                    if key not in chosen and weaker.get(key) is not None:
                        chosen[key] = str(weaker[key])
        return chosen
    return {}


_PATHS = ("models", "esm", "dnabert", "classifier", "cache", "triton_cache")


def _expand_home(path: str, environ: Mapping[str, str]) -> str:
    return environ.get("HOME", "/") + path[1:] if path.startswith("~/") else path


def _with_home(values: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """`~` in paths made the home folder; the defaults that live under it (XDG folders)."""
    home = environ.get("HOME", "/")
    values = {
        key: _expand_home(value, environ) if key in _PATHS else value
        for key, value in values.items()
    }
    cache = environ.get("XDG_CACHE_HOME") or f"{home}/.cache"
    data = environ.get("XDG_DATA_HOME") or f"{home}/.local/share"
    values.setdefault("cache", f"{cache}/virnucpro")
    values.setdefault("database_url", f"sqlite:///{data}/virnucpro/virnucpro.db")
    return values


# How an option, a variable's text or a config value is read, from the field's type above.
_TYPES = {f.name: f.type for f in fields(Settings)} | {"v1_attention": "bool"}


def _typed(key: str, value: Any) -> Any:
    kind = _TYPES[key]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in TRUE + FALSE:
            raise UserError(f"{key}: expected true or false, not {value!r}")
        return text in TRUE
    if kind == "float":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}: expected a number of seconds, not {value!r}") from None
        if number <= 0:
            raise UserError(f"{key}: must be more than 0, not {number}")
        return number
    if kind == "int":
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}: expected a whole number, not {value!r}") from None
        if number < 1:
            raise UserError(f"{key}: must be at least 1, not {number}")
        return number
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        raise UserError(f"{key}: expected a string, not {type(value).__name__} {value!r}")
    return value
