"""The Python API and the prediction stream, on the demo models: `load_models`, `Predictor`,
`Prediction`, `predict_stream`, and the guarantee that every way in gives the same results."""

from __future__ import annotations

import io
import json

import pytest
import torch
from models_for_tests import CONFORMANCE, DemoModels, model_args
from result_files import assert_same_results

import virnucpro_worker
from virnucpro_worker.errors import InputError, UserError
from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline import stream as stream_module
from virnucpro_worker.pipeline.outputs import (
    RUN_FILE,
)
from virnucpro_worker.pipeline.predictor import Predictor
from virnucpro_worker.pipeline.scorer import LoadedModels
from virnucpro_worker.pipeline.stream import StreamProgress, predict_stream
from virnucpro_worker.sequences.fasta import read_fasta

WITH_ORFS = CONFORMANCE / "test_with_orfs.fa"


@pytest.fixture(scope="module")
def predictor(demo_models: DemoModels) -> Predictor:
    return virnucpro_worker.load_models(models=demo_models.folder)


def coding_records(count: int = 40) -> list[tuple[str, str]]:
    """Records with stop-free frames on both strands (repeats of a non-stop codon run)."""
    unit = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA"
    return [(f"rec{i}", unit * (3 + i % 20) + "ACGT"[: i % 4]) for i in range(count)]


def test_load_models_takes_strings_and_gives_a_predictor(demo_models: DemoModels) -> None:
    predictor = virnucpro_worker.load_models(
        str(demo_models.esm),
        str(demo_models.dnabert),
        str(demo_models.classifier),
        device="cpu",
        dtype="fp32",
        attention="v1-bmm",
    )
    assert predictor.attention == "v1-bmm" and predictor.chunk_sizes == (300, 500)
    assert predictor.demo  # the files say so, however they were named
    prediction = predictor.predict(WITH_ORFS, chunk_size=500)
    record = prediction.records[0]
    assert (record.id, record.length, record.chunks, record.kept_frames) == (
        "synthetic_seq_1",
        174,
        1,
        2,
    )
    assert record.call in ("virus", "others") and 0 <= record.max_virus_score <= 1
    assert [frame.id for frame in prediction.frames][:2] == [
        "synthetic_seq_1_chunk_1R1",
        "synthetic_seq_1_chunk_1R2",
    ]
    assert prediction.provenance["demo_models"] is True
    assert prediction.provenance["counts"]["kept_frames"] == len(prediction.frames) == 4


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"demo": True, "device": "cuda:1"}, "CUDA is not available"),
        ({"demo": True, "device": "tpu"}, "unknown device 'tpu'"),
        ({"demo": True, "device": 3}, "device must be a string"),
        ({"demo": True, "dtype": "bf17"}, "unknown dtype 'bf17'"),
        ({"demo": True, "attention": "nope"}, "unknown attention backend 'nope'"),
        ({"esm": "esm2_t2_demo.pt"}, "incomplete model set"),
        ({"models": "/no/such/folder"}, "no such folder"),
        ({"demo": True, "esm": "x.pt"}, "name different model sets"),
    ],
)
def test_load_models_refuses_bad_values_in_one_line(arguments, message, monkeypatch) -> None:
    monkeypatch.setenv("VIRNUCPRO_CONFIG", "")
    with pytest.raises(UserError, match=message) as caught:
        virnucpro_worker.load_models(**arguments)
    assert "\n" not in str(caught.value)


def test_every_kind_of_source_gives_the_same_prediction(predictor: Predictor, tmp_path) -> None:
    pairs = coding_records()
    path = tmp_path / "in.fa"
    path.write_text("".join(f">{name} a description\n{sequence}\n" for name, sequence in pairs))
    from_path = predictor.predict(path, 300)
    assert from_path.frames, "the input must keep frames for this test to mean anything"
    for source in (str(path), iter(pairs), io.StringIO(path.read_text()), path.open("rb")):
        other = predictor.predict(source, 300)
        assert (other.frames, other.chunks, other.records) == (
            from_path.frames,
            from_path.chunks,
            from_path.records,
        )


def test_pairs_are_checked_like_a_file(predictor: Predictor) -> None:
    with pytest.raises(InputError, match=r"record 2 \('b'\): duplicate record id"):
        predictor.predict([("b", "ACGT"), ("b", "ACGT")], 500)
    with pytest.raises(InputError, match=r"record 1 \('p'\).*not a nucleotide"):
        predictor.predict([("p", "MKVLL")], 500)
    with pytest.raises(InputError, match="holds whitespace"):
        predictor.predict([("two words", "ACGT")], 500)


def test_prediction_write_is_byte_identical_to_the_cli(demo_models, predictor, tmp_path) -> None:
    code = main(
        [
            "predict",
            str(WITH_ORFS),
            "--chunk-size",
            "500",
            "--out",
            str(tmp_path / "cli"),
            "--no-progress",
            *model_args(demo_models),
        ]
    )
    assert code == 0
    predictor.predict(WITH_ORFS, 500).write(tmp_path / "api")
    assert_same_results(tmp_path / "api", tmp_path / "cli")
    cli_run = json.loads((tmp_path / "cli" / RUN_FILE).read_text())
    api_run = json.loads((tmp_path / "api" / RUN_FILE).read_text())
    assert api_run["outputs"] == cli_run["outputs"]
    assert api_run["models"] == cli_run["models"] and api_run["counts"] == cli_run["counts"]
    # On the CPU the thread count decides how some matrix products sum: it is recorded.
    assert api_run["cpu_threads"] == cli_run["cpu_threads"] == torch.get_num_threads()


def test_the_api_embeds_blocks_of_the_configured_size_as_the_cli_does(
    demo_models, tmp_path, monkeypatch
) -> None:
    """`block_bases` decides which frames share a pack, and so the last bits on a GPU: the API
    takes it from the settings, as `predict` and a queued job do, and run.json records it."""
    monkeypatch.setenv("VIRNUCPRO_BLOCK_BASES", "3000")
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in coding_records()))
    cli = ["predict", str(fasta), "--chunk-size", "500", "--out", str(tmp_path / "cli")]
    assert main([*cli, "--no-progress", *model_args(demo_models)]) == 0
    predictor = virnucpro_worker.load_models(models=demo_models.folder)
    blocks = list(predictor.predict_stream(fasta, 500))
    assert len(blocks) > 1 and all(sum(r.length for r in b.records) < 6000 for b in blocks)
    predictor.predict(fasta, 500).write(tmp_path / "api")
    assert_same_results(tmp_path / "api", tmp_path / "cli")
    for where in ("api", "cli"):
        run = json.loads((tmp_path / where / RUN_FILE).read_text())
        assert run["block_bases"] == 3000
        assert set(run["packing"]["token_budget"]) == {"esm2", "dnabert_s"}


def test_the_stream_yields_whole_records_in_order(predictor, tmp_path, monkeypatch) -> None:
    """Blocks of whole records, ordinals continuing across blocks from `first_index`,
    progress after each block, features for every frame in steps."""
    monkeypatch.setattr(stream_module, "FRAMES_PER_STEP", 7)
    path = tmp_path / "in.fa"
    path.write_text("".join(f">{n}\n{s}\n" for n, s in coding_records()))
    reports: list[StreamProgress] = []
    features: list[tuple[int, tuple[int, ...]]] = []
    blocks = list(
        predict_stream(
            predictor,
            read_fasta(path),
            300,
            on_progress=reports.append,
            on_features=lambda frames, x: features.append((len(frames), tuple(x.shape))),
            first_index=100,
            block_bases=2000,
        )
    )
    assert len(blocks) > 3
    ordinals = [record.index for block in blocks for record in block.records]
    assert ordinals == list(range(100, 140))
    for block in blocks:
        assert {frame.record for frame in block.frames} <= {r.index for r in block.records}
        assert block.stage_seconds.keys() >= {"prepare", "dnabert_s", "esm2", "classify"}
    assert [report.records for report in reports] == [
        sum(len(b.records) for b in blocks[: i + 1]) for i in range(len(blocks))
    ]
    frames = sum(len(block.frames) for block in blocks)
    assert reports[-1].frames == frames == sum(count for count, _ in features)
    assert all(count <= 7 and shape == (count, 32 + 64) for count, shape in features)
    # Block and step boundaries change only a matrix product's last bits.
    whole = predictor.predict(path, 300)
    streamed = [f for b in blocks for f in b.frames]
    assert [(f.record - 100, f.id) for f in streamed] == [(f.record, f.id) for f in whole.frames]
    for a, b in zip(streamed, whole.frames, strict=True):
        assert abs(a.virus_score - b.virus_score) < 1e-6


def test_a_missing_chunk_size_classifier_fails_before_any_work(demo_models, tmp_path) -> None:
    folder = tmp_path / "only500"
    folder.mkdir()
    for path in (demo_models.esm, demo_models.classifier):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / demo_models.dnabert.name).symlink_to(demo_models.dnabert)
    predictor = virnucpro_worker.load_models(models=folder)
    assert predictor.chunk_sizes == (500,)
    with pytest.raises(UserError, match="no classifier for 300 bp chunks"):
        next(predictor.predict_stream(WITH_ORFS, 300))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_backends_on_one_model_set_match_each_alone(demo_models, dtype) -> None:
    """A worker serving both backends (or compare-attention) builds both encoders on one
    loaded model set; in either order, each gives what it gives when built alone."""
    from virnucpro_worker.models.model_files import ModelFiles

    files = ModelFiles.in_folder(demo_models.folder)
    sequences = [sequence for _, sequence in coding_records(12)]

    def embeddings(order: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        models = LoadedModels.load(files, torch.device("cpu"), dtype)
        out = {}
        for name in order:
            protein, nucleotide = models.encoders_for(name)
            out[name] = (protein.embed(["MKVLAAGG", "PEPTIDE" * 9]), nucleotide.embed(sequences))
        return out

    alone = {name: embeddings([name])[name] for name in ("flash-varlen", "v1-bmm")}
    for order in (["flash-varlen", "v1-bmm"], ["v1-bmm", "flash-varlen"]):
        together = embeddings(order)
        for name in order:
            for got, expected in zip(together[name], alone[name], strict=True):
                assert torch.equal(got, expected), (order, name)


def test_encoders_are_built_once_per_backend(predictor: Predictor) -> None:
    again = predictor.with_attention(predictor.attention)
    assert again.protein_encoder is predictor.protein_encoder
    assert again.models is predictor.models


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ([], "<records>: no records"),  # as an empty file is an error
        (io.StringIO(""), "no records"),
        (["ACGT" * 100], "record 1 is a str 'ACGTACGT"),
        ([("a", "ACGT", "x")], "record 1 is a tuple"),
        ("ACGT" * 120, "ACGTACGT"),  # a sequence as a path: too long a name for the system
        ("no_such.fa", "no_such.fa: no such file"),
        (b">a\nACGT\n", "a bytes is not a source"),
    ],
)
def test_what_is_not_a_source_says_what_a_source_may_be(predictor, source, message) -> None:
    with pytest.raises(InputError) as caught:
        predictor.predict(source, 500)
    text = str(caught.value)
    assert message in text and "\n" not in text
    if "no records" not in message:
        assert "`source` is a FASTA/FASTQ file's path" in text and "[('my_id', " in text


def test_an_empty_file_and_no_pairs_are_the_same_error(predictor, tmp_path) -> None:
    (tmp_path / "empty.fa").write_text("")
    for source in (tmp_path / "empty.fa", []):
        with pytest.raises(InputError):
            predictor.predict(source, 500)
    with pytest.raises(InputError, match="no records"):
        list(predictor.predict_stream([], 500))


def test_a_chunk_size_as_text_is_shown_as_text(predictor) -> None:
    with pytest.raises(UserError, match=r"must be one of \(300, 500\) \(an int\), not '500'"):
        predictor.predict(coding_records(2), "500")


def test_a_prediction_s_repr_is_one_line(predictor) -> None:
    prediction = predictor.predict(coding_records(40), 500)
    text = repr(prediction)
    assert "\n" not in text and len(text) < 200 and "FrameScore" not in text
    viral = sum(record.call == "virus" for record in prediction.records)
    assert text == (
        f"<Prediction: 40 records, {len(prediction.chunks)} scored chunks, "
        f"{len(prediction.frames)} kept frames; {viral} records called virus, DEMO MODELS>"
    )


def test_demo_models_warn_once_when_loaded(demo_models, caplog) -> None:
    with caplog.at_level("WARNING"):
        predictor = virnucpro_worker.load_models(models=demo_models.folder)
        predictor.predict(coding_records(3), 500)
        predictor.predict(coding_records(3), 500)
    assert caplog.text.count("DEMO MODELS") == 1


def test_the_backend_line_is_logged_once_per_loaded_model_set(demo_models, caplog) -> None:
    """A worker builds a Predictor per shard (with_attention): the line comes once."""
    with caplog.at_level("INFO"):
        predictor = virnucpro_worker.load_models(models=demo_models.folder, attention="v1-bmm")
        for _ in range(3):
            predictor.with_attention("v1-bmm")
        predictor.with_attention("flash-varlen")
    lines = [r.getMessage() for r in caplog.records if "attention backend" in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == [
        "attention backend v1-bmm",
        "attention backend flash-varlen",
    ]
