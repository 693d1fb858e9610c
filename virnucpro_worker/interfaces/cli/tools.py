"""Commands about models and kernels: backends, demo-models, convert-classifier."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import UserError
from ...files import check_writable_file, check_writable_folder
from .options import Commands, non_negative


def add_commands(commands: Commands) -> None:
    backends = commands.add_parser("backends", help="list attention backends and their kernels")
    backends.add_argument("--device", help="the device to list kernels for (default: cuda if any)")
    backends.add_argument(
        "--dtype", choices=("fp32", "fp16", "bf16"), help="the dtype to list kernels for"
    )
    backends.set_defaults(run=_backends)

    demo = commands.add_parser("demo-models", help="write the tiny demo models (a model folder)")
    demo.add_argument("--out", type=Path, required=True, help="the folder to write them into")
    demo.add_argument("--seed", type=non_negative, help="random seed (default: the built-in one)")
    demo.set_defaults(run=_demo_models)

    convert = commands.add_parser(
        "convert-classifier", help="rewrite a classifier as .safetensors (no pickle)"
    )
    convert.add_argument("source", type=Path, help="the classifier: .pth (pickle) or .safetensors")
    convert.add_argument("target", type=Path, help="the new file; must end in .safetensors")
    convert.set_defaults(run=_convert_classifier)


def _backends(args: argparse.Namespace) -> int:
    from ...attention.registry import available_backends
    from ...models.devices import dtype_name, resolve_device, resolve_dtype

    try:
        device = resolve_device(args.device)
    except UserError as error:  # e.g. --device cuda on a machine without CUDA: still list them
        print(f"{args.device}: {error}")
        print("attention backends:")
        for name, backend in sorted(available_backends().items()):
            print(f"  {name:14} {backend.description}")
        return 0
    dtype = resolve_dtype(args.dtype, device)
    print(
        f"attention backends, with the kernels they would use on {device} in {dtype_name(dtype)}:"
    )
    for name, backend in sorted(available_backends().items()):
        esm, dnabert = backend.kernels(device, dtype)
        print(f"  {name:14} ESM-2: {esm:14} DNABERT-S: {dnabert:14} {backend.description}")
    return 0


def _demo_models(args: argparse.Namespace) -> int:
    args.new_paths.watch(args.out)
    check_writable_folder(args.out)
    from ...models.demo import DEMO_SEED, write_demo_models

    write_demo_models(args.out, DEMO_SEED if args.seed is None else args.seed)
    print(f"demo models (their predictions are meaningless): --models {args.out}")
    return 0


def _convert_classifier(args: argparse.Namespace) -> int:
    args.new_paths.watch(args.target)
    check_writable_file(args.target)
    from ...models.classifier import convert_classifier

    source, converted = convert_classifier(args.source, args.target)
    print(
        f"wrote {args.target} (safetensors, sha256 {converted.sha256[:12]}) from the "
        f"{source.format} file {args.source}"
    )
    return 0
