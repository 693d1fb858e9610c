"""ESM-2 checkpoints: fair-esm's file layout, names through the torch hub cache, refusals."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from models_for_tests import random_esm2

from virnucpro_worker.errors import UserError
from virnucpro_worker.models.esm2 import load_esm2, save_checkpoint


def test_checkpoint_round_trip(tmp_path):
    module = random_esm2(layers=2, dim=32, heads=4, seed=1)
    path = tmp_path / "esm2_t2_test.pt"
    save_checkpoint(module, path)
    loaded = load_esm2(path)
    assert loaded.num_layers == 2 and loaded.module.embed_dim == 32
    for name, tensor in module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[name], tensor), name
    assert len(loaded.sha256) == 64


def test_a_published_fp16_checkpoint_loads_without_random_initialisation(tmp_path, monkeypatch):
    """The checkpoints are fp16: each weight is rounded once to the run's dtype, exactly as
    building fair-esm's fp32 module, loading into it and casting gave, and no weight is drawn
    at random first (that cost half a minute at 3B). A checkpoint without the contact head's
    regression (published ones) leaves it zero, not random."""
    module = random_esm2(layers=2, dim=32, heads=4, seed=5).half()
    path = tmp_path / "esm2_t2_fp16.pt"
    save_checkpoint(module, path)
    data = torch.load(path, weights_only=False)
    for key in [key for key in data["model"] if "contact_head.regression" in key]:
        del data["model"][key]
    torch.save(data, path)

    def no_random_weights(*args, **kwargs):
        raise AssertionError("a weight was initialised at random")

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "uniform_", no_random_weights)
        patch.setattr(torch.Tensor, "normal_", no_random_weights)
        loaded = load_esm2(path, dtype=torch.bfloat16).module
    for name, tensor in module.state_dict().items():
        if "contact_head.regression" in name:
            assert not loaded.state_dict()[name].any(), name
        else:
            expected = tensor.float().to(torch.bfloat16)
            assert torch.equal(loaded.state_dict()[name], expected), name
    assert not any(parameter.requires_grad for parameter in loaded.parameters())


def test_weights_of_the_wrong_shape_are_one_line(tmp_path):
    path = tmp_path / "esm2_t2_test.pt"
    save_checkpoint(random_esm2(seed=6), path)
    data = torch.load(path, weights_only=False)
    data["model"]["encoder.embed_tokens.weight"] = torch.zeros(3, 3)
    torch.save(data, path)
    with pytest.raises(UserError, match=r"weights do not fit ESM-2 \(keys: embed_tokens.weight"):
        load_esm2(path)


def test_a_name_is_found_in_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    save_checkpoint(random_esm2(seed=2), tmp_path / "hub" / "checkpoints" / "esm2_t2_cached.pt")
    assert load_esm2("esm2_t2_cached").path.parent == tmp_path / "hub" / "checkpoints"


def test_half_precision_on_request(tmp_path):
    path = tmp_path / "esm2_t2_test.pt"
    save_checkpoint(random_esm2(seed=3), path)
    assert load_esm2(path, dtype=torch.bfloat16).module.embed_tokens.weight.dtype == torch.bfloat16


def test_not_a_name_nor_a_file():
    with pytest.raises(UserError, match="no such file, and not a fair-esm model name"):
        load_esm2("/nowhere/model.pt")


def test_unexpected_weights_are_refused(tmp_path):
    path = tmp_path / "esm2_t2_test.pt"
    module = random_esm2(seed=4)
    save_checkpoint(module, path)
    data = torch.load(path, weights_only=False)
    data["model"]["encoder.extra.weight"] = torch.zeros(1)
    torch.save(data, path)
    with pytest.raises(UserError, match="weights do not fit ESM-2"):
        load_esm2(path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "esm2_t2_evil.pt"
    torch.save({"cfg": {"model": _Payload()}, "model": {}}, path, pickle_module=pickle)
    with pytest.raises(UserError, match=r"refused to load: the pickle asks for posix\.system"):
        load_esm2(path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
