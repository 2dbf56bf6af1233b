from pathlib import Path

import pytest

from gyre.config import load_settings
from gyre.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_config_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s.config_file is None
    assert s.get("backends", "metadata") == "sqlite:///.gyre/meta.db"
    assert s.metadata_url == f"sqlite:///{tmp_path.resolve()}/.gyre/meta.db"
    assert s.store_url == f"file://{tmp_path.resolve()}/.gyre/store"
    assert s.values[("backends", "metadata")].source == "default"


def test_found_by_walking_up(tmp_path: Path) -> None:
    cfg = write(tmp_path / "gyre.toml", '[backends]\nstore = "s3://bucket/prefix"\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    s = load_settings(deep, environ={})
    assert s.config_file == cfg
    assert s.root == tmp_path
    assert s.store_url == "s3://bucket/prefix"
    assert s.values[("backends", "store")].source == str(cfg)


def test_precedence_argument_env_file_default(tmp_path: Path) -> None:
    write(tmp_path / "gyre.toml", '[backends]\nonline = "redis://file:6379/0"\nstream = "nats://file:4222"\n')
    env = {"GYRE_BACKENDS_ONLINE": "redis://env:6379/0"}
    s = load_settings(tmp_path, environ=env, overrides={"backends": {"stream": "local"}})
    assert s.get("backends", "online") == "redis://env:6379/0"
    assert s.values[("backends", "online")].source == "env:GYRE_BACKENDS_ONLINE"
    assert s.get("backends", "stream") == "local"
    assert s.values[("backends", "stream")].source == "argument"
    assert s.get("backends", "compute") == "local"


def test_unknown_key_names_file_and_suggests(tmp_path: Path) -> None:
    cfg = write(tmp_path / "gyre.toml", '[backends]\nmetdata = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, environ={})
    assert str(cfg) in str(err.value)
    assert "metdata" in str(err.value)
    assert "Did you mean 'metadata'?" in str(err.value)


def test_unknown_section(tmp_path: Path) -> None:
    write(tmp_path / "gyre.toml", '[backend]\nmetadata = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match=r"unknown section \[backend\].*Did you mean 'backends'"):
        load_settings(tmp_path, environ={})


def test_malformed_url_names_key_and_source(tmp_path: Path) -> None:
    write(tmp_path / "gyre.toml", '[backends]\nmetadata = "mysql://db"\n')
    with pytest.raises(ConfigError, match=r"\[backends\] metadata = 'mysql://db'.*valid schemes"):
        load_settings(tmp_path, environ={})


def test_url_without_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no host"):
        load_settings(tmp_path, environ={"GYRE_BACKENDS_METADATA": "postgresql:///db"})


def test_invalid_toml(tmp_path: Path) -> None:
    write(tmp_path / "gyre.toml", "[backends\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path, environ={})


def test_unknown_env_variable_in_known_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GYRE_BACKENDS_METADTA.*Did you mean"):
        load_settings(tmp_path, environ={"GYRE_BACKENDS_METADTA": "x"})


def test_int_and_list_coercion(tmp_path: Path) -> None:
    s = load_settings(
        tmp_path, environ={"GYRE_SERVER_PORT": "9001", "GYRE_PROJECT_DEFINITIONS": "a.py, b.py"}
    )
    assert s.get("server", "port") == 9001
    assert s.get("project", "definitions") == ["a.py", "b.py"]
    with pytest.raises(ConfigError, match="whole number"):
        load_settings(tmp_path, environ={"GYRE_SERVER_PORT": "eighty"})


def test_secrets_masked_in_describe(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={"GYRE_SERVER_TOKEN": "s3cret"})
    rows = {r["key"]: r for r in s.describe()}
    assert rows["server.token"]["value"] == "********"
    assert rows["server.token"]["env"] == "GYRE_SERVER_TOKEN"
    assert "s3cret" not in repr(s.describe())


def test_gyre_config_env_points_at_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "other.toml", '[project]\nname = "x"\n')
    assert load_settings(Path("/"), environ={"GYRE_CONFIG": str(cfg)}).get("project", "name") == "x"
    with pytest.raises(ConfigError, match="not a file"):
        load_settings(tmp_path, environ={"GYRE_CONFIG": str(tmp_path / "missing.toml")})


def test_url_passwords_masked_in_describe(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={"GYRE_BACKENDS_METADATA": "postgresql://me:pw@db:5432/gyre"})
    rows = {r["key"]: r for r in s.describe()}
    assert rows["backends.metadata"]["value"] == "postgresql://me:********@db:5432/gyre"
    assert "pw@" not in repr(s.describe())
