"""The settings file: defaults a site sets once; command-line options win."""

from __future__ import annotations

import json

from models_for_tests import CONFORMANCE, model_args

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
