"""The original MLP classifier: loading its files safely, converting them, scoring features.

The published `300_model.pth`/`500_model.pth` are whole modules pickled by `torch.save(model)`
from a script run as `__main__`. Unpickling is code execution, so they are read with
`torch.load(weights_only=True)` and an allow-list of the four classes such a file holds; anything
else in the pickle is refused before it can run. Only the tensors are kept: a fresh
`MLPClassifier` is built from them, so nothing else from the file survives loading.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import Tensor, nn

from ..errors import UserError, first_line
from ..files import atomic_write, sha256_of
from .model_files import DEMO_MARK
from .safe_load import load_weights

SCORE_BATCH_ROWS = 4096  # rows per forward pass: bounded memory whatever the number of frames
CPU = torch.device("cpu")

_REQUIRED_KEYS = (
    "hidden_layer.weight",
    "hidden_layer.bias",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "output_layer.weight",
    "output_layer.bias",
)
# BatchNorm rebuilds this counter when it is absent; it plays no part in evaluation.
_OPTIONAL_KEYS = ("bn1.num_batches_tracked",)


class MLPClassifier(nn.Module):
    """The original's classifier, same attribute names so its weights load unchanged."""

    def __init__(self, input_dim: int = 3328, hidden_dim: int = 512, num_class: int = 2) -> None:
        super().__init__()
        self.hidden_layer = nn.Linear(input_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, num_class)
        self.dropout = nn.Dropout(0.5)
        # The original's initialisation, so that demo classifiers look like untrained originals.
        nn.init.xavier_uniform_(self.hidden_layer.weight)
        nn.init.xavier_uniform_(self.output_layer.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.hidden_layer(x)
        x = self.bn1(x)
        x = F.relu(x)
        x = self.dropout(x)
        return self.output_layer(x)


# Everything an original whole-module pickle needs beyond torch's default tensor allow-list.
_ORIGINAL_PICKLE_GLOBALS = [
    (MLPClassifier, "__main__.MLPClassifier"),
    nn.Linear,
    nn.BatchNorm1d,
    nn.Dropout,
]


@dataclass
class ClassifierModel:
    module: MLPClassifier
    path: Path
    sha256: str
    format: str  # "original-pickle", "state-dict" or "safetensors"
    demo: bool = False


def load_classifier(path: Path | str, device: torch.device = CPU) -> ClassifierModel:
    """Load an original pickle, a state-dict `.pth`/`.pt` or a `.safetensors`, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"classifier {path}: no such file")
    if path.suffix == ".safetensors":
        (tensors, demo), file_format = _read_safetensors(path), "safetensors"
    else:
        tensors, file_format, demo = _read_torch_file(path)
    module = _build_classifier(tensors, path).to(device).eval()
    return ClassifierModel(module, path, sha256_of(path), file_format, demo)


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], bool]:
    try:
        with safetensors.safe_open(path, framework="pt", device="cpu") as handle:
            demo = (handle.metadata() or {}).get(DEMO_MARK) == "true"
            return {key: handle.get_tensor(key) for key in handle.keys()}, demo  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path}: not a readable safetensors file ({error})") from None


def _read_torch_file(path: Path) -> tuple[dict[str, Tensor], str, bool]:
    loaded = load_weights(path, "a VirNucPro classifier", _ORIGINAL_PICKLE_GLOBALS)
    if isinstance(loaded, MLPClassifier):
        demo = vars(loaded).get(DEMO_MARK) is True
        return _module_tensors(loaded, path), "original-pickle", demo
    if isinstance(loaded, dict):
        return loaded, "state-dict", False
    raise UserError(f"{path}: holds a {type(loaded).__name__}, not a classifier or a state dict")


def _module_tensors(module: nn.Module, path: Path, prefix: str = "") -> dict[str, Tensor]:
    """Parameters and buffers read from the unpickled attributes, calling none of its methods.

    `state_dict()` would run hooks stored in the file; reading the attribute dicts does not.
    """
    state = vars(module)
    tensors = {
        prefix + name: value
        for kind in ("_parameters", "_buffers")
        for name, value in state.get(kind, {}).items()
        if value is not None
    }
    for name, child in state.get("_modules", {}).items():
        if not isinstance(child, nn.Module):
            raise UserError(f"{path}: submodule {prefix}{name} is not a torch module")
        tensors.update(_module_tensors(child, path, f"{prefix}{name}."))
    return tensors


def _build_classifier(tensors: dict[str, Tensor], path: Path) -> MLPClassifier:
    missing = [key for key in _REQUIRED_KEYS if key not in tensors]
    unexpected = sorted(set(tensors) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if missing or unexpected:
        raise UserError(
            f"{path}: not an MLPClassifier state (missing keys: {', '.join(missing) or 'none'}; "
            f"unexpected keys: {', '.join(unexpected) or 'none'})"
        )
    if not all(isinstance(value, Tensor) for value in tensors.values()):
        raise UserError(f"{path}: a classifier weight is not a tensor")
    hidden, output = tensors["hidden_layer.weight"], tensors["output_layer.weight"]
    if hidden.ndim != 2 or output.ndim != 2:
        raise UserError(f"{path}: the classifier's layer weights must be matrices")
    (hidden_dim, input_dim), num_class = hidden.shape, output.shape[0]
    if num_class != 2:
        raise UserError(f"{path}: a VirNucPro classifier has 2 classes, this one has {num_class}")
    module = MLPClassifier(input_dim, hidden_dim, num_class)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as error:  # mismatched shapes between layers
        raise UserError(f"{path}: inconsistent classifier weights ({first_line(error)})") from None
    return module


def save_classifier_safetensors(
    module: MLPClassifier, path: Path | str, demo: bool = False
) -> None:
    tensors = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    metadata = {DEMO_MARK: "true"} if demo else None
    with atomic_write(Path(path), "wb") as handle:
        handle.write(safetensors.torch.save(tensors, metadata=metadata))


def convert_classifier(src: Path | str, dst: Path | str) -> tuple[ClassifierModel, ClassifierModel]:
    """Rewrite any loadable classifier as `.safetensors` (no pickle at all), then load that;
    the demo mark is kept. Returns (the source as read, the converted file as read)."""
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise UserError(f"{dst}: the converted classifier must be a .safetensors file")
    source = load_classifier(src)
    save_classifier_safetensors(source.module, dst, demo=source.demo)
    return source, load_classifier(dst)


def save_original_pickle(module: MLPClassifier, path: Path | str, demo: bool = False) -> None:
    """Write `module` the way the original's training script did: `torch.save` of the whole
    module, its class recorded as `__main__.MLPClassifier`.

    Pickle records a class by module and name and checks that the name resolves to it, so for the
    duration of the save `sys.modules["__main__"]` is a stand-in holding that class; the real
    `__main__` is never modified and is put back afterwards.
    """
    main_class = type("MLPClassifier", (MLPClassifier,), {"__module__": "__main__"})
    copy = main_class(
        module.hidden_layer.in_features,
        module.hidden_layer.out_features,
        module.output_layer.out_features,
    )
    copy.load_state_dict(module.state_dict())
    copy.train(module.training)
    if demo:
        setattr(copy, DEMO_MARK, True)
    stand_in = types.ModuleType("__main__")
    stand_in.MLPClassifier = main_class
    real_main = sys.modules["__main__"]
    sys.modules["__main__"] = stand_in
    try:
        with atomic_write(Path(path), "wb") as handle:
            torch.save(copy, handle)
    finally:
        sys.modules["__main__"] = real_main


def predict_scores(
    module: MLPClassifier, features: Tensor, batch_rows: int = SCORE_BATCH_ROWS
) -> Tensor:
    """Softmax probabilities, float32 [N, 2] on the CPU: column 0 = others, column 1 = virus."""
    if module.training:
        raise ValueError("predict_scores needs the classifier in eval mode")
    if features.ndim != 2 or features.shape[1] != module.hidden_layer.in_features:
        raise ValueError(
            f"features must be [N, {module.hidden_layer.in_features}], not {list(features.shape)}"
        )
    device = module.hidden_layer.weight.device
    scores = torch.empty((features.shape[0], module.output_layer.out_features))
    with torch.inference_mode():
        for start in range(0, features.shape[0], batch_rows):
            batch = features[start : start + batch_rows].to(device, torch.float32)
            logits = module(batch).float()
            scores[start : start + batch.shape[0]] = torch.softmax(logits, dim=1).cpu()
    return scores
