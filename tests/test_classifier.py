"""The MLP classifier: safe loading of the original's pickles, conversion, scoring."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from virnucpro_worker.errors import UserError
from virnucpro_worker.models.classifier import (
    MLPClassifier,
    convert_classifier,
    load_classifier,
    predict_scores,
    save_classifier_safetensors,
    save_original_pickle,
)

VANILLA = Path(__file__).parent / "data" / "vanilla_500"


def trained_looking(input_dim: int = 16, hidden_dim: int = 8, seed: int = 0) -> MLPClassifier:
    """A small classifier with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    module = MLPClassifier(input_dim, hidden_dim)
    with torch.no_grad():
        module.bn1.running_mean.uniform_(-0.5, 0.5)
        module.bn1.running_var.uniform_(0.5, 2.0)
        module.bn1.weight.uniform_(0.5, 1.5)
        module.bn1.bias.uniform_(-0.2, 0.2)
    return module.eval()


def features(rows: int, dim: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))


def test_original_pickle_loads_with_same_outputs(tmp_path: Path) -> None:
    module = trained_looking()
    path = tmp_path / "500_model.pth"
    save_original_pickle(module, path)
    model = load_classifier(path)
    assert model.format == "original-pickle"
    assert type(model.module) is MLPClassifier  # rebuilt, not the unpickled object
    assert not model.module.training
    assert len(model.sha256) == 64
    x = features(10)
    assert torch.equal(predict_scores(model.module, x), predict_scores(module, x))


def test_original_pickle_needs_exactly_the_allow_listed_classes(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    save_original_pickle(trained_looking(), path)
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) == {
        "__main__.MLPClassifier",
        "torch.nn.modules.linear.Linear",
        "torch.nn.modules.batchnorm.BatchNorm1d",
        "torch.nn.modules.dropout.Dropout",
    }


def test_saving_an_original_pickle_leaves_main_untouched(tmp_path: Path) -> None:
    main = sys.modules["__main__"]
    before = dict(vars(main))
    save_original_pickle(trained_looking(), tmp_path / "model.pth")
    assert sys.modules["__main__"] is main
    assert dict(vars(main)) == before


def test_state_dict_and_safetensors_load(tmp_path: Path) -> None:
    module = trained_looking()
    x = features(5)
    expected = predict_scores(module, x)
    for name in ("weights.pth", "weights.pt"):
        torch.save(module.state_dict(), tmp_path / name)
        model = load_classifier(tmp_path / name)
        assert model.format == "state-dict"
        assert torch.equal(predict_scores(model.module, x), expected)
    save_classifier_safetensors(module, tmp_path / "weights.safetensors")
    model = load_classifier(tmp_path / "weights.safetensors")
    assert model.format == "safetensors"
    assert torch.equal(predict_scores(model.module, x), expected)


def test_shapes_are_inferred_from_the_weights(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_classifier_safetensors(MLPClassifier(12, 3), path)
    module = load_classifier(path).module
    assert module.hidden_layer.in_features == 12
    assert module.hidden_layer.out_features == 3
    assert module.output_layer.out_features == 2


def test_convert_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    source = tmp_path / "500_model.pth"
    save_original_pickle(trained_looking(), source)
    read, converted = convert_classifier(source, tmp_path / "500_model.safetensors")
    assert (read.format, converted.format) == ("original-pickle", "safetensors")
    x = features(7)
    original = load_classifier(source).module
    assert torch.equal(predict_scores(converted.module, x), predict_scores(original, x))


def test_convert_needs_a_safetensors_destination(tmp_path: Path) -> None:
    source = tmp_path / "model.pth"
    save_original_pickle(trained_looking(), source)
    with pytest.raises(UserError, match=r"\.safetensors"):
        convert_classifier(source, tmp_path / "model2.pth")


class RunsACommand:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_a_pickle_calling_os_system_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "SOMEFILE"
    path = tmp_path / "evil.pth"
    torch.save({"payload": RunsACommand(f"touch {marker}")}, path)
    with pytest.raises(UserError, match=r"evil\.pth.*system") as error:
        load_classifier(path)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_a_payload_inside_a_whole_module_pickle_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "SOMEFILE"
    main_class = type("MLPClassifier", (MLPClassifier,), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "MLPClassifier", main_class, raising=False)
    module = main_class(16, 8)
    module.payload = RunsACommand(f"touch {marker}")
    path = tmp_path / "500_model.pth"
    torch.save(module, path)
    with pytest.raises(UserError, match="system"):
        load_classifier(path)
    assert not marker.exists()


def test_an_unknown_main_class_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evil = type("Evil", (), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "Evil", evil, raising=False)
    path = tmp_path / "evil.pth"
    torch.save(evil(), path)
    with pytest.raises(UserError, match=r"evil\.pth.*__main__\.Evil"):
        load_classifier(path)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"hidden_layer.weight": torch.zeros(4, 3)}, "missing keys"),
        ({**MLPClassifier(3, 4).state_dict(), "extra": torch.zeros(1)}, "unexpected keys: extra"),
        ({**MLPClassifier(3, 4).state_dict(), "bn1.weight": torch.zeros(5)}, "inconsistent"),
        (MLPClassifier(3, 4, num_class=3).state_dict(), "2 classes"),
    ],
)
def test_wrong_weights_are_user_errors(tmp_path: Path, tensors: dict, message: str) -> None:
    path = tmp_path / "bad.pth"
    torch.save(tensors, path)
    with pytest.raises(UserError, match=message):
        load_classifier(path)


def test_unreadable_and_missing_files_are_user_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    for name in ("junk.pth", "junk.safetensors", "list.pth", "missing.pth"):
        with pytest.raises(UserError, match=name):
            load_classifier(tmp_path / name)


def by_hand(module: MLPClassifier, x: torch.Tensor) -> torch.Tensor:
    """The original's forward pass in eval mode, written out from its parameters."""
    hidden = x @ module.hidden_layer.weight.T + module.hidden_layer.bias
    bn = module.bn1
    normed = (hidden - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    logits = torch.relu(normed) @ module.output_layer.weight.T + module.output_layer.bias
    return torch.softmax(logits, dim=1)


def test_scores_are_softmax_of_the_eval_forward_pass() -> None:
    module = trained_looking()
    x = features(50)
    scores = predict_scores(module, x)
    assert scores.dtype == torch.float32
    assert scores.shape == (50, 2)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(50))
    with torch.no_grad():
        torch.testing.assert_close(scores, by_hand(module, x))


def test_scores_do_not_depend_on_batching() -> None:
    module = trained_looking()
    x = features(37)
    torch.testing.assert_close(
        predict_scores(module, x, batch_rows=5), predict_scores(module, x), rtol=1e-6, atol=1e-7
    )


def test_scores_of_no_rows_and_wrong_inputs() -> None:
    module = trained_looking()
    assert predict_scores(module, torch.zeros(0, 16)).shape == (0, 2)
    with pytest.raises(ValueError, match="features"):
        predict_scores(module, torch.zeros(3, 15))
    with pytest.raises(ValueError, match="eval"):
        predict_scores(module.train(), torch.zeros(3, 16))


def test_real_merged_features_have_the_expected_layout() -> None:
    merged = torch.load(VANILLA / "output_1_merged.pt", weights_only=True)
    assert set(merged) == {"ids", "data"}
    assert merged["data"].shape == (4, 3328)
    assert merged["data"].dtype == torch.float32
    rows = (VANILLA / "prediction_results.txt").read_text().splitlines()[1:]
    assert merged["ids"] == [row.split("\t")[0] for row in rows]
    scores = predict_scores(trained_looking(3328, 512), merged["data"])
    assert scores.shape == (4, 2)
