"""`predict --embeddings`: every kept frame's features in embeddings.safetensors, keyed by
(record, chunk, frame), read back with the safetensors library; the API's arrays are the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from models_for_tests import DemoModels, model_args
from safetensors import safe_open
from safetensors.numpy import load_file

import virnucpro_worker
from virnucpro_worker.errors import UserError
from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline import stream as stream_module
from virnucpro_worker.pipeline.embeddings import EMBEDDINGS_FILE
from virnucpro_worker.pipeline.outputs import PREDICTIONS_FILE, RUN_FILE, read_prediction_results
from virnucpro_worker.pipeline.predictor import Predictor
from virnucpro_worker.sequences.fasta import read_fasta
from virnucpro_worker.sequences.translation import frame_id

DEMO_INPUT = Path(__file__).parents[1] / "examples" / "demo_contigs.fa"


@pytest.fixture(scope="module")
def predictor(demo_models: DemoModels) -> Predictor:
    return virnucpro_worker.load_models(models=demo_models.folder)


def predict(demo_models: DemoModels, out: Path, *options: str) -> None:
    arguments = ["predict", str(DEMO_INPUT), "--chunk-size", "500", "--out", str(out)]
    assert main([*arguments, "--no-progress", *options, *model_args(demo_models)]) == 0


def stream_features(predictor: Predictor) -> torch.Tensor:
    """The merged features exactly as the prediction stream hands them out."""
    steps: list[torch.Tensor] = []
    blocks = virnucpro_worker.predict_stream(
        predictor, read_fasta(DEMO_INPUT), 500, on_features=lambda _, x: steps.append(x.clone())
    )
    for _ in blocks:
        pass
    return torch.cat(steps).float()


def test_the_file_holds_every_frame_with_its_keys_and_features(
    demo_models, predictor, tmp_path
) -> None:
    predict(demo_models, tmp_path, "--embeddings")
    tensors = load_file(tmp_path / EMBEDDINGS_FILE)
    rows = read_prediction_results(tmp_path / PREDICTIONS_FILE)
    nucleotide_width, protein_width = predictor.feature_widths
    assert {name: (t.dtype.name, t.shape) for name, t in tensors.items()} == {
        "record": ("int64", (len(rows),)),
        "chunk": ("int32", (len(rows),)),
        "frame": ("int8", (len(rows),)),
        "dnabert_s": ("float32", (len(rows), nucleotide_width)),
        "esm2": ("float32", (len(rows), protein_width)),
    }
    # The keys name the rows of prediction_results.txt, in order.
    record_ids = [record.id for record in read_fasta(DEMO_INPUT)]
    keys = zip(tensors["record"], tensors["chunk"], tensors["frame"], strict=True)
    rebuilt = [
        frame_id(record_ids[record], int(chunk), "F" if frame > 0 else "R", abs(int(frame)))
        for record, chunk, frame in keys
    ]
    assert rebuilt == [row[0] for row in rows]
    # The features are the stream's, and the classifier turns them into the file's scores.
    features = np.hstack([tensors["dnabert_s"], tensors["esm2"]])
    assert np.array_equal(features, stream_features(predictor).numpy())
    scores = predictor.scores(torch.from_numpy(features), 500).numpy()
    assert scores[:, 1].tolist() == [np.float32(row[3]) for row in rows]
    with safe_open(tmp_path / EMBEDDINGS_FILE, "np") as handle:
        metadata = handle.metadata()
    raw = (tmp_path / EMBEDDINGS_FILE).read_bytes()
    size = int.from_bytes(raw[:8], "little")
    assert size % 8 == 0 and raw[8:9] == b"{" and raw[8 + size - 1 : 8 + size] == b"}"
    assert metadata["dtype"] == "float32" and metadata["demo_models"] == "true"
    assert EMBEDDINGS_FILE in json.loads((tmp_path / RUN_FILE).read_text())["outputs"]


def test_float16_and_many_small_steps(demo_models, predictor, tmp_path, monkeypatch) -> None:
    """Steps of 7 frames in blocks of about 3 kbp: the rows are appended in order."""
    predict(demo_models, tmp_path / "whole", "--embeddings", "float16")
    monkeypatch.setattr(stream_module, "FRAMES_PER_STEP", 7)
    monkeypatch.setenv("VIRNUCPRO_BLOCK_BASES", "3000")
    predict(demo_models, tmp_path / "steps", "--embeddings", "float16")
    whole = (tmp_path / "whole" / EMBEDDINGS_FILE).read_bytes()
    assert (tmp_path / "steps" / EMBEDDINGS_FILE).read_bytes() == whole
    tensors = load_file(tmp_path / "whole" / EMBEDDINGS_FILE)
    assert tensors["esm2"].dtype == np.float16
    expected = stream_features(predictor).numpy().astype(np.float16)
    assert np.array_equal(np.hstack([tensors["dnabert_s"], tensors["esm2"]]), expected)


def test_the_api_returns_the_same_arrays_and_writes_the_same_file(
    demo_models, predictor, tmp_path
) -> None:
    predict(demo_models, tmp_path / "cli", "--embeddings", "float16")
    prediction = predictor.predict(DEMO_INPUT, 500, embeddings="float16")
    arrays = prediction.embeddings
    stored = load_file(tmp_path / "cli" / EMBEDDINGS_FILE)
    assert len(arrays) == len(prediction.frames) == len(stored["record"])
    for name, values in stored.items():
        assert np.array_equal(getattr(arrays, name), values), name
    assert arrays.record.tolist() == [frame.record for frame in prediction.frames]
    prediction.write(tmp_path / "api")
    for name in (EMBEDDINGS_FILE, PREDICTIONS_FILE):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    assert predictor.predict(DEMO_INPUT, 500).embeddings is None


def test_a_run_without_embeddings_removes_the_previous_file(demo_models, tmp_path) -> None:
    predict(demo_models, tmp_path, "--embeddings")
    predict(demo_models, tmp_path)
    assert not (tmp_path / EMBEDDINGS_FILE).exists()


def test_an_unknown_dtype_is_refused(demo_models, predictor, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        predict(demo_models, tmp_path / "out", "--embeddings", "bf16")
    assert stopped.value.code == 2 and "invalid choice: 'bf16'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="embeddings dtype must be one of float16, float32"):
        predictor.predict(DEMO_INPUT, 500, embeddings="bf16")
