"""App settings the way Core Tools loads them: local.settings.json ``Values`` merged into the environment.

Choice: a variable already set in the real environment wins over the file. Core Tools does the same (it only
fills in settings that are not already environment variables), and it lets a test or a shell override one
setting without editing the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

LOCAL_SETTINGS_FILE = "local.settings.json"
_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")


class SettingNotFoundError(KeyError):
    """A binding expression ``%NAME%`` names an app setting that is not set."""


def read_local_settings(script_root: Path) -> dict[str, str]:
    """The ``Values`` of local.settings.json as strings; empty when the file does not exist."""
    path = script_root / LOCAL_SETTINGS_FILE
    if not path.is_file():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    values = document.get("Values") or {}
    return {str(name): "" if value is None else str(value) for name, value in values.items()}


def apply_local_settings(script_root: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put the file's settings into ``environ`` (default os.environ) unless already set; returns names applied."""
    target = os.environ if environ is None else environ
    applied = []
    for name, value in read_local_settings(script_root).items():
        if name not in target:
            target[name] = value
            applied.append(name)
    return applied


def resolve_binding_expression(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace each ``%NAME%`` with the app setting NAME, as the host does for queue names and schedules."""
    source = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in source:
            raise SettingNotFoundError(f"binding expression %{name}% names an app setting that is not set")
        return source[name]

    return _SETTING_EXPRESSION.sub(substitute, text)
