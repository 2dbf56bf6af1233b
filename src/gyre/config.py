"""Settings: ``gyre.toml`` found by walking up from the working directory, ``GYRE_*`` overrides.

Precedence is explicit: an argument to :func:`load_settings` beats a ``GYRE_<SECTION>_<KEY>``
environment variable, which beats ``gyre.toml``, which beats the default. Nothing is
read at import time. Every value remembers where it came from, for ``gyre config show``.

Besides settings, ``gyre.toml`` may declare alert rules as ``[[alerts]]`` tables. They are
definitions, not settings (no defaults, no environment overrides): :class:`Settings` keeps
them as written, and :func:`gyre.monitoring.alerts.rules_from_toml` reads them when the
project's definitions load.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gyre.errors import ConfigError, did_you_mean

CONFIG_FILE = "gyre.toml"

# section -> key -> (default, allowed URL schemes or None for free text / lists)
SCHEMA: dict[str, dict[str, tuple[Any, tuple[str, ...] | None]]] = {
    "project": {
        "name": ("gyre", None),
        "definitions": (["definitions.py"], None),
    },
    "backends": {
        "metadata": ("sqlite:///.gyre/meta.db", ("sqlite", "postgresql", "postgresql+psycopg")),
        "store": ("file://.gyre/store", ("file", "s3")),
        "online": ("sqlite:///.gyre/online.db", ("sqlite", "redis")),
        "stream": ("local", ("local", "nats")),
        "compute": ("local", ("local", "ray")),
    },
    "server": {
        # Where the SDK sends requests instead of using the backends directly.
        "url": ("", ("http", "https", "")),
        "host": ("127.0.0.1", None),
        "port": (8080, None),
        # Bearer token the control plane requires; mandatory when not bound to loopback.
        "token": ("", None),
        "actor": ("", None),
    },
}

SECRET_KEYS = {("server", "token")}
# Arrays of tables gyre.toml may hold besides the [sections] above.
TABLE_ARRAYS = ("alerts",)


@dataclass(frozen=True)
class Value:
    """One setting's value and where it came from (``default``, ``gyre.toml``, ``env:NAME``, ``argument``)."""

    value: Any
    source: str


@dataclass(frozen=True)
class Settings:
    """The resolved settings tree. Read values with ``settings.get("backends", "metadata")``."""

    root: Path
    config_file: Path | None
    values: dict[tuple[str, str], Value] = field(default_factory=dict)
    alerts: tuple[dict[str, Any], ...] = ()
    """The ``[[alerts]]`` tables of ``gyre.toml``, as written (checked when definitions load)."""

    def get(self, section: str, key: str) -> Any:
        return self.values[(section, key)].value

    @property
    def metadata_url(self) -> str:
        return self.resolve_url(self.get("backends", "metadata"))

    @property
    def store_url(self) -> str:
        return self.resolve_url(self.get("backends", "store"))

    @property
    def online_url(self) -> str:
        return self.resolve_url(self.get("backends", "online"))

    @property
    def server_url(self) -> str:
        return self.get("server", "url")

    @property
    def actor(self) -> str:
        return self.get("server", "actor") or _os_user()

    def resolve_url(self, url: str) -> str:
        """Make relative ``sqlite:///`` and ``file://`` paths relative to the project root."""
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///") :]
            if rel and rel != ":memory:":
                return "sqlite:///" + str((self.root / rel).resolve())
        if url.startswith("file://"):
            rel = url[len("file://") :]
            if not rel.startswith("/"):
                return "file://" + str((self.root / rel).resolve())
        return url

    def describe(self, reveal_secrets: bool = False) -> list[dict[str, Any]]:
        """Every setting with its environment variable and source (secrets masked)."""
        rows = []
        for (section, key), v in sorted(self.values.items()):
            shown = v.value
            if not reveal_secrets:
                shown = "********" if (section, key) in SECRET_KEYS and shown else mask_url_password(shown)
            rows.append(
                {
                    "key": f"{section}.{key}",
                    "value": shown,
                    "env": env_name(section, key),
                    "source": v.source,
                }
            )
        return rows


def mask_url_password(value: Any) -> Any:
    """``postgresql://me:secret@db/x`` -> ``postgresql://me:********@db/x``; other values unchanged."""
    if not isinstance(value, str) or "://" not in value:
        return value
    parts = urlsplit(value)
    if not parts.password:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def env_name(section: str, key: str) -> str:
    return f"GYRE_{section.upper()}_{key.upper()}"


def find_config(start: Path | None = None) -> Path | None:
    """Walk up from ``start`` (the working directory) to the first ``gyre.toml``, as git finds ``.git``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    start: Path | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Resolve the settings tree: argument > env > ``gyre.toml`` > default."""
    env = os.environ if environ is None else environ
    explicit = env.get("GYRE_CONFIG")
    config_file = Path(explicit).resolve() if explicit else find_config(start)
    if explicit and not (config_file and config_file.is_file()):
        raise ConfigError(f"GYRE_CONFIG points at {explicit}, which is not a file.")
    root = config_file.parent if config_file else (start or Path.cwd()).resolve()

    values: dict[tuple[str, str], Value] = {
        (s, k): Value(default, "default") for s, keys in SCHEMA.items() for k, (default, _) in keys.items()
    }
    alerts: tuple[dict[str, Any], ...] = ()
    if config_file:
        read, alerts = _read_toml(config_file)
        for (s, k), v in read.items():
            values[(s, k)] = Value(_coerce(s, k, v, str(config_file)), str(config_file))
    for section, keys in SCHEMA.items():
        for key in keys:
            name = env_name(section, key)
            if name in env:
                values[(section, key)] = Value(_coerce(section, key, env[name], name), f"env:{name}")
    for section, keys in (overrides or {}).items():
        for key, v in keys.items():
            _check_key(section, key, "argument")
            values[(section, key)] = Value(_coerce(section, key, v, "argument"), "argument")

    _check_unknown_env(env)
    for (section, key), v in values.items():
        _check_url(section, key, v)
    return Settings(root=root, config_file=config_file, values=values, alerts=alerts)


def _read_toml(path: Path) -> tuple[dict[tuple[str, str], Any], tuple[dict[str, Any], ...]]:
    """The settings of ``path`` by (section, key), and its ``[[alerts]]`` tables."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. Fix the line it names.") from exc
    out: dict[tuple[str, str], Any] = {}
    alerts = data.pop("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        raise ConfigError(
            f"{path}: 'alerts' must be an array of tables: write each alert rule under its own "
            "[[alerts]] header."
        )
    for section, keys in data.items():
        if section not in SCHEMA:
            _check_key(section, "", str(path))  # raises: unknown section, with the nearest one
        if not isinstance(keys, dict):
            raise ConfigError(
                f"{path}: '{section}' must be a [section]; valid sections: {', '.join(SCHEMA)}."
            )
        for key, value in keys.items():
            _check_key(section, key, str(path))
            out[(section, key)] = value
    return out, tuple(alerts)


def _check_key(section: str, key: str, where: str) -> None:
    if section not in SCHEMA:
        arrays = ", ".join(f"[[{a}]]" for a in TABLE_ARRAYS)
        raise ConfigError(
            f"{where}: unknown section [{section}]; valid sections: {', '.join(SCHEMA)}, {arrays}."
            + did_you_mean(section, [*SCHEMA, *TABLE_ARRAYS])
        )
    if key not in SCHEMA[section]:
        raise ConfigError(
            f"{where}: unknown key '{key}' in [{section}]; valid keys: {', '.join(SCHEMA[section])}."
            + did_you_mean(key, SCHEMA[section])
        )


def _check_unknown_env(env: os._Environ[str] | dict[str, str]) -> None:
    known = {env_name(s, k) for s, keys in SCHEMA.items() for k in keys} | {"GYRE_CONFIG"}
    for name in env:
        if name.startswith("GYRE_") and name not in known and name.count("_") >= 2:
            section = name.split("_")[1].lower()
            if section in SCHEMA:
                raise ConfigError(
                    f"Unknown environment variable {name}; valid ones for [{section}]: "
                    + ", ".join(env_name(section, k) for k in SCHEMA[section])
                    + "."
                    + did_you_mean(name, known)
                )


def _coerce(section: str, key: str, value: Any, where: str) -> Any:
    default = SCHEMA[section][key][0]
    if isinstance(default, bool):
        return str(value).lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: [{section}] {key} must be a whole number, got {value!r}.") from None
    if isinstance(default, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: [{section}] {key} must be a list of strings, got {value!r}.")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: [{section}] {key} must be a string, got {value!r}.")
    return value


def _check_url(section: str, key: str, v: Value) -> None:
    schemes = SCHEMA[section][key][1]
    if schemes is None:
        return
    url = v.value
    scheme = urlsplit(url).scheme if "://" in url or ":" in url else url
    if scheme in schemes and ("://" in url or scheme in {"local", "", "ray"}):
        networked = {"postgresql", "postgresql+psycopg", "redis", "nats", "http", "https"}
        if scheme in networked and not urlsplit(url).hostname:
            raise ConfigError(
                f"[{section}] {key} = {url!r} (from {v.source}) has no host; "
                f"write it like {scheme}://host:port/..."
            )
        return
    valid = ", ".join(f"{s}://" if s not in {"local", ""} else s for s in schemes if s)
    raise ConfigError(
        f"[{section}] {key} = {url!r} (from {v.source}) is not a URL Gyre can use; valid schemes: {valid}."
    )


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers); the uid still identifies the actor
        return f"uid:{os.getuid()}"
