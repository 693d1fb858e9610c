"""End-to-end `predict` and `compare-attention` with the demo models, on the conformance inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from models_for_tests import CONFORMANCE, DemoModels, model_args

from virnucpro_worker.files import sha256_of
from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.models.classifier import (
    MLPClassifier,
    load_classifier,
    save_original_pickle,
)
from virnucpro_worker.models.demo import write_demo_models
from virnucpro_worker.pipeline import stream as stream_module
from virnucpro_worker.pipeline.compare import recommendation
from virnucpro_worker.pipeline.outputs import highest_scores_from, read_prediction_results

WITH_ORFS = CONFORMANCE / "test_with_orfs.fa"
FIXED = CONFORMANCE / "test_fixed_500bp.fa"
NO_FRAMES = CONFORMANCE / "test_sequences_small.fa"


def predict(demo_models: DemoModels, fasta: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "predict",
            str(fasta),
            "--chunk-size",
            "500",
            "--out",
            str(out),
            "--no-progress",
            *model_args(demo_models),
            *extra,
        ]
    )


@pytest.mark.parametrize("fasta", [WITH_ORFS, FIXED])
def test_predict_writes_the_original_files(demo_models, tmp_path, fasta):
    assert predict(demo_models, fasta, tmp_path, "--keep-intermediate") == 0
    stem = fasta.name.removesuffix(".fa")
    for name in (
        f"{stem}_chunked500.fa",
        f"{stem}_identified_nucleotide.fa",
        f"{stem}_identified_protein.faa",
    ):
        assert (tmp_path / name).read_bytes() == (CONFORMANCE / name).read_bytes(), name

    rows = read_prediction_results(tmp_path / "prediction_results.txt")
    frame_ids = [
        line[1:]
        for line in (CONFORMANCE / f"{stem}_identified_protein.faa").read_text().splitlines()
        if line.startswith(">")
    ]
    assert [row[0] for row in rows] == frame_ids
    for _, label, others, virus in rows:
        assert 0 <= others <= 1 and 0 <= virus <= 1
        assert abs(others + virus - 1) < 1e-6
        assert label == ("virus" if virus > others else "others")
    highest = (tmp_path / "prediction_results_highestscore.csv").read_text().splitlines()
    assert highest[0] == "Modified_ID\tIs_Virus"
    assert highest[1:] == [f"{chunk}\t{call}" for chunk, call in highest_scores_from(rows)]


def test_scores_are_the_classifier_applied_to_the_kept_features(demo_models, tmp_path):
    assert predict(demo_models, WITH_ORFS, tmp_path, "--keep-intermediate") == 0
    merged = torch.load(tmp_path / "test_with_orfs_merged.pt", weights_only=True)
    rows = read_prediction_results(tmp_path / "prediction_results.txt")
    assert merged["ids"] == [row[0] for row in rows]
    module = load_classifier(demo_models.classifier).module
    with torch.no_grad():
        hidden = module.hidden_layer(merged["data"])
        bn = module.bn1
        hidden = (hidden - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
        hidden = torch.relu(hidden * bn.weight + bn.bias)
        by_hand = torch.softmax(module.output_layer(hidden), dim=1)
    written = torch.tensor([[row[2], row[3]] for row in rows])
    assert torch.allclose(by_hand, written, atol=1e-6)


def test_run_json_records_what_produced_the_result(demo_models, tmp_path):
    assert predict(demo_models, WITH_ORFS, tmp_path) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["attention_backend"] == "flash-varlen"
    assert run["kernels"] == {"esm2": "sdpa-padded", "dnabert_s": "sdpa-padded"}
    assert run["dtype"] == "fp32" and run["device"] == "cpu"
    assert run["models"]["esm2"]["sha256"] == sha256_of(demo_models.esm)
    assert run["models"]["classifier"]["sha256"] == sha256_of(demo_models.classifier)
    assert run["models"]["classifier"]["format"] == "original-pickle"
    weights = run["models"]["dnabert_s"]["files"]["model.safetensors"]
    assert weights == sha256_of(demo_models.dnabert / "model.safetensors")
    assert run["input"]["sha256"] == sha256_of(WITH_ORFS)
    expected = {"torch", "fair-esm", "tokenizers"} | ({"triton"} if find_spec("triton") else set())
    assert expected <= set(run["software"])
    assert run["counts"] == {
        "records": 2,
        "bases": 345,
        "chunks": 2,
        "kept_frames": 4,
        "scored_chunks": 2,
        "viral_chunks": run["counts"]["viral_chunks"],
        "viral_records": run["counts"]["viral_records"],
        "viral_regions": run["counts"]["viral_regions"],
        "rna_records": 0,
        "dropped_codons": 0,
    }
    assert run["code_version"].startswith("0.")
    assert set(run["stage_seconds"]) >= {"prepare", "dnabert_s", "esm2", "classify"}


def test_both_backends_give_the_same_predictions_in_fp32(demo_models, tmp_path):
    assert predict(demo_models, FIXED, tmp_path / "flash") == 0
    assert predict(demo_models, FIXED, tmp_path / "v1", "--v1-attention") == 0
    flash = read_prediction_results(tmp_path / "flash" / "prediction_results.txt")
    v1 = read_prediction_results(tmp_path / "v1" / "prediction_results.txt")
    assert [row[:2] for row in flash] == [row[:2] for row in v1]
    assert max(abs(a[3] - b[3]) for a, b in zip(flash, v1, strict=True)) < 1e-5
    run = json.loads((tmp_path / "v1" / "run.json").read_text())
    assert run["attention_backend"] == "v1-bmm"
    assert run["kernels"]["esm2"] == "fair-esm-bmm"


def test_no_kept_frame_gives_header_only_results(demo_models, tmp_path, caplog):
    assert predict(demo_models, NO_FRAMES, tmp_path) == 0
    assert (tmp_path / "prediction_results.txt").read_text() == (
        "Sequence_ID\tPrediction\tscore1\tscore2\n"
    )
    assert (tmp_path / "prediction_results_highestscore.csv").read_text() == (
        "Modified_ID\tIs_Virus\n"
    )
    banner, *summary = (tmp_path / "sequence_summary.tsv").read_text().splitlines()
    assert banner.startswith("# DEMO MODELS")  # the demo models' files say what they are
    assert len(summary) == 1 + 11 and all(line.endswith("\tunscored\t0") for line in summary[1:])
    assert "no stop-free frame" in caplog.text


def test_bad_input_fails_before_any_result_is_written(demo_models, tmp_path, capsys):
    bad = tmp_path / "bad.fa"
    bad.write_text(">ok\nACGTACGT\n>protein\nMKVLLQE\n")
    assert predict(demo_models, bad, tmp_path / "out") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"virnucpro: error: {bad}: record 2 ('protein'): 'L' at position 4 is not "
        "a nucleotide or IUPAC code (is this a protein FASTA?)"
    ]
    assert not (tmp_path / "out" / "prediction_results.txt").exists()


def test_classifier_that_does_not_fit_the_encoders_is_refused(demo_models, tmp_path, capsys):
    wrong = tmp_path / "wrong.pth"
    save_original_pickle(MLPClassifier(input_dim=10, hidden_dim=4), wrong)
    args = [*model_args(demo_models)[:-1], str(wrong)]
    code = main(
        ["predict", str(WITH_ORFS), "--chunk-size", "500", "--out", str(tmp_path / "out"), *args]
    )
    assert code == 2
    assert "the classifier takes 10 features, but DNABERT-S" in capsys.readouterr().err


def test_demo_models_are_deterministic(tmp_path):
    first, second = write_demo_models(tmp_path / "a"), write_demo_models(tmp_path / "b")
    names = ["esm2_t2_demo.pt", "300_model.pth", "500_model.pth"]
    names += [f"dnabert_s_demo/{name}" for name in ("model.safetensors", "tokenizer.json")]
    for name in names:
        assert sha256_of(tmp_path / "a" / name) == sha256_of(tmp_path / "b" / name), name
    assert first.chunk_sizes == second.chunk_sizes == (300, 500)


def test_compare_attention_reports_agreement(demo_models, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = main(
        ["compare-attention", str(FIXED), *model_args(demo_models), "--report", str(report_path)]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["frames"] == 4
    assert report["embedding"]["cosine_min"] > 0.99999
    assert report["embedding"]["max_abs_diff"] < 1e-5
    assert report["prediction"]["label_agreement_percent"] == 100.0
    assert report["recommendation"] == "ACCEPT"
    assert len(report["per_frame"]) == 4
    assert "recommendation: ACCEPT" in capsys.readouterr().out


def test_cli_demo_run_in_a_subprocess(tmp_path):
    """The README's main job: the console entry point with the cached demo models."""
    env = {**os.environ, "VIRNUCPRO_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "virnucpro_worker.interfaces.cli",
            "predict",
            str(WITH_ORFS),
            "--chunk-size",
            "500",
            "--out",
            str(tmp_path / "out"),
            "--demo-models",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "meaningless" in result.stderr
    assert (tmp_path / "out" / "DEMO_MODELS_PREDICTIONS_ARE_MEANINGLESS.txt").exists()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["demo_models"] is True
    assert (tmp_path / "cache").is_dir()


def test_backends_command_lists_builtins(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "flash-varlen" in out and "v1-bmm" in out and "sdpa-padded" in out


@pytest.mark.parametrize(
    ("agreement", "advice"),
    [
        (100.0, "ACCEPT"),
        (99.5, "ACCEPT"),
        (99.0, "VALIDATE on production data"),
        (95.0, "VALIDATE on production data"),
        (94.9, "use v1-bmm"),
        (0.0, "use v1-bmm"),
    ],
)
def test_recommendation_thresholds(agreement, advice):
    assert recommendation(agreement) == advice


def test_input_is_checked_before_the_models_load(tmp_path, capsys):
    bad = tmp_path / "bad.fa"
    bad.write_text(">p\nMKVLLQE\n")
    missing = [
        "--esm",
        str(tmp_path / "esm2_t2_none.pt"),
        "--dnabert",
        str(tmp_path),
        "--classifier",
        str(tmp_path / "none.pth"),
    ]
    code = main(
        ["predict", str(bad), "--chunk-size", "500", "--out", str(tmp_path / "o"), *missing]
    )
    assert code == 2
    assert "is not a nucleotide or IUPAC code" in capsys.readouterr().err


def test_output_path_that_is_a_file(demo_models, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("a file\n")
    assert predict(demo_models, WITH_ORFS, target) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"virnucpro: error: {target}: exists and is not a directory"


def test_frames_embedded_in_steps_give_the_same_results(demo_models, tmp_path, monkeypatch):
    """A block (whole records) is embedded a few frames at a time, so one long contig never
    holds all its features at once; the results must not depend on the step."""
    assert predict(demo_models, FIXED, tmp_path / "whole", "--keep-intermediate") == 0
    monkeypatch.setattr(stream_module, "FRAMES_PER_STEP", 1)
    assert predict(demo_models, FIXED, tmp_path / "steps", "--keep-intermediate") == 0
    # Equal up to float rounding: a matrix product's last bit depends on the batch it is in.
    whole_rows = read_prediction_results(tmp_path / "whole" / "prediction_results.txt")
    step_rows = read_prediction_results(tmp_path / "steps" / "prediction_results.txt")
    assert [row[:2] for row in whole_rows] == [row[:2] for row in step_rows]
    for a, b in zip(whole_rows, step_rows, strict=True):
        assert abs(a[2] - b[2]) < 1e-6 and abs(a[3] - b[3]) < 1e-6
    whole = torch.load(tmp_path / "whole" / "test_fixed_500bp_merged.pt", weights_only=True)
    steps = torch.load(tmp_path / "steps" / "test_fixed_500bp_merged.pt", weights_only=True)
    assert whole["ids"] == steps["ids"] and torch.allclose(whole["data"], steps["data"], atol=1e-6)


def test_a_classifier_named_for_the_other_chunk_size_is_flagged(demo_models, tmp_path, caplog):
    renamed = tmp_path / "300_model.pth"
    renamed.write_bytes(demo_models.classifier.read_bytes())
    args = [*model_args(demo_models)[:-1], str(renamed)]
    code = main(
        [
            "predict",
            str(WITH_ORFS),
            "--chunk-size",
            "500",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
            *args,
        ]
    )
    assert code == 0
    assert "was trained on 300 bp chunks, but --chunk-size is 500" in caplog.text


def test_compare_attention_streams_in_steps(demo_models, tmp_path, monkeypatch, capsys):
    """Steps of one frame and blocks of one record give the report that whole blocks give;
    the report carries its provenance."""
    many = tmp_path / "many.fa"
    unit = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA"
    many.write_text("".join(f">r{i}\n{unit * (4 + i)}\n" for i in range(6)))
    args = ["compare-attention", str(many), *model_args(demo_models), "--chunk-size", "300"]
    assert main([*args, "--report", str(tmp_path / "whole.json")]) == 0
    monkeypatch.setattr(stream_module, "FRAMES_PER_STEP", 1)
    monkeypatch.setenv("VIRNUCPRO_BLOCK_BASES", "1")
    assert main([*args, "--report", str(tmp_path / "steps.json")]) == 0
    whole, steps = (json.loads((tmp_path / n).read_text()) for n in ("whole.json", "steps.json"))
    assert steps["provenance"]["first"]["models"] == whole["provenance"]["first"]["models"]
    assert whole["frames"] == steps["frames"] > 6
    assert [row["id"] for row in whole["per_frame"]] == [row["id"] for row in steps["per_frame"]]
    for a, b in zip(whole["per_frame"], steps["per_frame"], strict=True):
        assert abs(a["cosine"] - b["cosine"]) < 1e-9
    assert steps["provenance"]["input"]["sha256"] == sha256_of(many)
    assert steps["provenance"]["first"]["attention_backend"] == "flash-varlen"
    assert steps["provenance"]["second"]["kernels"]["esm2"] == "fair-esm-bmm"
    assert "command_line" in steps["provenance"]["invocation"]


def test_compare_attention_refuses_options_it_would_ignore(demo_models, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["compare-attention", str(FIXED), *model_args(demo_models), "--attention", "v1-bmm"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --attention" in capsys.readouterr().err
