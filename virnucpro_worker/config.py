"""Optional settings file: defaults for options a site sets once (model paths, backend).

Read from $VIRNUCPRO_CONFIG, else ~/.config/virnucpro/config.toml; command-line options win.
Example:
    attention = "flash-varlen"
    esm = "/models/esm2_t36_3B_UR50D.pt"
    dnabert = "/models/DNABERT-S"
    classifier = "/models/500_model.pth"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import UserError

KEYS = {"attention", "esm", "dnabert", "classifier", "device", "dtype"}


def config_path() -> Path:
    explicit = os.environ.get("VIRNUCPRO_CONFIG")
    if explicit:
        return Path(explicit)
    return Path.home() / ".config" / "virnucpro" / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    if not path.is_file():
        if os.environ.get("VIRNUCPRO_CONFIG"):
            raise UserError(f"{path}: VIRNUCPRO_CONFIG names a file that does not exist")
        return {}
    try:
        settings = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    unknown = set(settings) - KEYS
    if unknown:
        raise UserError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return settings
