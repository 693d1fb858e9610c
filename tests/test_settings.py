"""Settings: options, then VIRNUCPRO_* variables, then the config file, then defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from models_for_tests import CONFORMANCE, model_args

from virnucpro_worker.errors import UserError
from virnucpro_worker.interfaces.cli import main

WITH_ORFS = CONFORMANCE / "test_with_orfs.fa"


def run_predict(out, *extra):
    return main(
        [
            "predict",
            str(WITH_ORFS),
            "--chunk-size",
            "500",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def test_config_sets_models_and_backend_and_options_win(demo_models, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text(
        f'attention = "v1-bmm"\nesm = "{demo_models.esm}"\ndnabert = "{demo_models.dnabert}"\n'
        f'classifier = "{demo_models.classifier}"\n'
    )
    monkeypatch.setenv("VIRNUCPRO_CONFIG", str(config))
    assert run_predict(tmp_path / "configured") == 0
    run = json.loads((tmp_path / "configured" / "run.json").read_text())
    assert run["attention_backend"] == "v1-bmm"
    assert run["models"]["classifier"]["file"] == str(demo_models.classifier)
    assert run["config_file"]["path"] == str(config)
    assert run_predict(tmp_path / "option", "--attention", "flash-varlen") == 0
    run = json.loads((tmp_path / "option" / "run.json").read_text())
    assert run["attention_backend"] == "flash-varlen"


def test_unknown_setting_is_refused(demo_models, tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.toml"
    config.write_text('atention = "v1-bmm"\n')
    monkeypatch.setenv("VIRNUCPRO_CONFIG", str(config))
    assert run_predict(tmp_path / "out", *model_args(demo_models)) == 2
    assert "unknown setting(s) atention" in capsys.readouterr().err


def test_missing_config_file_named_by_the_variable(demo_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIRNUCPRO_CONFIG", str(tmp_path / "absent.toml"))
    assert run_predict(tmp_path / "out", *model_args(demo_models)) == 2
    assert "VIRNUCPRO_CONFIG names a file that does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Precedence, resolved without running anything
# --------------------------------------------------------------------------------------------


def settings(options=None, environ=None, config_text=None, tmp_path=None):
    from virnucpro_worker.settings import load_settings

    environ = dict(environ or {})
    if config_text is not None:
        path = tmp_path / "config.toml"
        path.write_text(config_text)
        environ["VIRNUCPRO_CONFIG"] = str(path)
    environ.setdefault("HOME", str(tmp_path or "/nonexistent"))
    return load_settings(options or {}, environ)


def test_option_beats_environment_beats_config_beats_default(tmp_path):
    config = 'attention = "v1-bmm"\ndevice = "cpu"\nshard_chunks = 7\n'
    assert settings(tmp_path=tmp_path).attention == "flash-varlen"
    assert settings(config_text=config, tmp_path=tmp_path).attention == "v1-bmm"
    environ = {"VIRNUCPRO_ATTENTION": "flash-varlen", "VIRNUCPRO_SHARD_CHUNKS": "9"}
    chosen = settings(environ=environ, config_text=config, tmp_path=tmp_path)
    assert (chosen.attention, chosen.device, chosen.shard_chunks) == ("flash-varlen", "cpu", 9)
    chosen = settings({"attention": "v1-bmm"}, environ, config, tmp_path)
    assert chosen.attention == "v1-bmm"
    assert chosen.config_file == str(tmp_path / "config.toml") and len(chosen.config_sha256) == 64


def test_the_v1_switch_of_the_original_refactor(tmp_path):
    assert settings(environ={"VIRNUCPRO_V1_ATTENTION": "true"}).attention == "v1-bmm"
    assert settings(environ={"VIRNUCPRO_V1_ATTENTION": "false"}).attention == "flash-varlen"
    both = {"VIRNUCPRO_V1_ATTENTION": "true", "VIRNUCPRO_ATTENTION": "flash-varlen"}
    assert settings(environ=both).attention == "flash-varlen"
    with pytest.raises(UserError, match="expected true or false"):
        settings(environ={"VIRNUCPRO_V1_ATTENTION": "maybe"})


def test_the_model_set_comes_whole_from_the_strongest_source(demo_models, tmp_path):
    config = (
        f'esm = "{demo_models.esm}"\ndnabert = "{demo_models.dnabert}"\n'
        f'classifier = "{demo_models.classifier}"\n'
    )
    from_config = settings(config_text=config, tmp_path=tmp_path).model_files()
    assert from_config.classifiers == {
        300: str(demo_models.classifier),
        500: str(demo_models.classifier),
    }
    # An explicit file from a stronger source replaces that file only...
    mixed = settings({"classifier": str(demo_models.classifier_300)}, None, config, tmp_path)
    assert mixed.model_files().esm == str(demo_models.esm)
    assert mixed.model_files().classifiers[500] == str(demo_models.classifier_300)
    # ...a folder or the demo models from a stronger source replace the whole set.
    folder = settings({"models": str(demo_models.folder)}, None, config, tmp_path).model_files()
    assert folder.classifiers == {
        300: str(demo_models.classifier_300),
        500: str(demo_models.classifier),
    }
    environ = {"VIRNUCPRO_DEMO_MODELS": "1", "VIRNUCPRO_CACHE": str(tmp_path / "cache")}
    demo = settings(None, environ, config, tmp_path).model_files()
    assert demo.esm.startswith(str(tmp_path / "cache"))
    with pytest.raises(UserError, match="name different model sets"):
        settings({"demo_models": True, "models": str(demo_models.folder)}, tmp_path=tmp_path)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"VIRNUCPRO_SHARD_CHUNKS": "many"}, "shard_chunks: expected a whole number"),
        ({"VIRNUCPRO_MAX_RECORD_LENGTH": "0"}, "max_record_length: must be at least 1"),
    ],
)
def test_bad_values_are_named(environ, message):
    with pytest.raises(UserError, match=message):
        settings(environ=environ)


def test_no_module_below_the_interfaces_reads_the_environment():
    package = Path(__file__).parents[1] / "virnucpro_worker"
    readers = re.compile(r"os\.environ|os\.getenv|os\.putenv")
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "interfaces" not in path.parts and readers.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("redis_url", "localhost:6379", "is not a URL of the form redis://HOST:PORT/DB"),
        ("redis_url", "redis://:hunter2@host:port/0", "is not a URL (Port could not be cast"),
        ("database_url", "demo.db", "is not a URL of the form sqlite:///FILE"),
        ("database_url", "mysql://me:hunter2@host/db", "is not a URL of the form sqlite:///FILE"),
    ],
)
@pytest.mark.parametrize("source", ["option", "environment", "config file"])
def test_urls_are_checked_where_they_are_read(key, value, message, source, tmp_path):
    """A mistyped URL is one line naming where it came from, password hidden, wherever it was
    given; a driver's traceback later is too late."""
    where = {
        "option": {"redis_url": "--redis", "database_url": "--db"}[key],
        "environment": f"VIRNUCPRO_{key.upper()}",
        "config file": f"config file {tmp_path / 'config.toml'}: {key}",
    }[source]
    with pytest.raises(UserError) as caught:
        settings(
            {key: value} if source == "option" else None,
            {f"VIRNUCPRO_{key.upper()}": value} if source == "environment" else None,
            f'{key} = "{value}"\n' if source == "config file" else None,
            tmp_path,
        )
    text = str(caught.value)
    assert text.startswith(f"{where}: ") and message in text and "hunter2" not in text


def test_good_urls_pass(tmp_path):
    chosen = settings(
        {"redis_url": "rediss://:secret@queue:6380/2", "database_url": "postgresql://db/v"},
        tmp_path=tmp_path,
    )
    assert chosen.redis_url == "rediss://:secret@queue:6380/2"
    assert settings({"database_url": "sqlite:////tmp/x.db"}).database_url == "sqlite:////tmp/x.db"
    assert settings({"redis_url": "unix:///run/redis.sock"}).redis_url == "unix:///run/redis.sock"
