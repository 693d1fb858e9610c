#!/usr/bin/env python3
"""Render the wrapper's command as Galaxy does and run it with a stand-in `virnucpro`.

    <galaxy venv>/bin/python .ci/galaxy/check_command.py galaxy_tool/virnucpro.xml

Galaxy's steps are followed: macros expanded (galaxy.tool_util), the Cheetah template filled
(galaxy.util.template.fill_template), each line stripped and the lines joined with spaces.
The command then runs under bash in a scratch folder whose PATH starts with a fake `virnucpro`
that records its arguments. Checked: paths with spaces, quotes, $, backquotes and ; arrive as
one argument each and nothing in them runs; the right classifier for each chunk size; the
advanced options; GALAXY_SLOTS -> --workers; VIRNUCPRO_DEVICE -> --device unless the user chose
a device; and the switch to `submit --wait` when both queue variables are set (only then).
Exits 1 on any failure. Takes about a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from galaxy.tool_util.parser import get_tool_source
from galaxy.util.template import fill_template

NASTY = 'it\'s a "dir" with $HOME and `touch PWNED`; & | <x>'


class Dataset:
    """What the command sees of a data input: str() is the path, .ext the datatype."""

    def __init__(self, path: Path, ext: str) -> None:
        self.path, self.ext = str(path), ext

    def __str__(self) -> str:
        return self.path


class Selected:
    """A select from a data table: str() is the value, .fields the row's columns."""

    def __init__(self, value: str, fields: dict[str, str]) -> None:
        self.value, self.fields = value, fields

    def __str__(self) -> str:
        return self.value


class Boolean:
    def __init__(self, value: bool) -> None:
        self.value = value

    def __bool__(self) -> bool:
        return self.value

    def __str__(self) -> str:
        return "true" if self.value else "false"


FAKE_CLI = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def render(command: str, context: dict) -> str:
    text = fill_template(command, context=context, python_template_version="3")
    # Galaxy: strip every line, then the newlines become spaces
    return " ".join(line.strip() for line in text.split("\n")).strip()


def main(tool_xml: str) -> int:
    command = get_tool_source(tool_xml).parse_command()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        nasty = scratch / NASTY
        nasty.mkdir()
        dataset = nasty / "dataset 1's.dat"
        dataset.write_text(">r\nACGT\n")
        fields = {
            "value": "set",
            "name": "a set",
            "esm": str(nasty / "esm2 t36's.pt"),
            "dnabert": str(nasty / "DNABERT-S $dir"),
            "classifier_300": str(nasty / "300 `model`.pth"),
            "classifier_500": str(nasty / "500 'model'.pth"),
        }
        bin_dir = scratch / "bin"
        bin_dir.mkdir()
        (bin_dir / "virnucpro").write_text(FAKE_CLI)
        (bin_dir / "virnucpro").chmod(0o755)
        models = ["--esm", fields["esm"], "--dnabert", fields["dnabert"]]

        def case(name, params, env, expected, ext="fasta"):
            nonlocal passed, failed
            job = scratch / f"job-{passed + failed}"
            job.mkdir()
            context = {
                "input": Dataset(dataset, ext),
                "chunk_size": "500",
                "models": Selected("set", fields),
                "attention": "flash-varlen",
                "viral_fasta": Boolean(False),
                "embeddings_dtype": "none",
                "regions": {"min_chunks": "2", "max_gap": "1"},
                "advanced": {"dtype": "default", "device": "auto"},
            }
            context.update(params)
            log = job / "argv.jsonl"
            clean = {
                k: v for k, v in os.environ.items() if not k.startswith(("VIRNUCPRO_", "GALAXY_"))
            }
            path = f"{bin_dir}:{clean.get('PATH', '/usr/bin:/bin')}"
            clean.update(env, PATH=path, ARGV_LOG=str(log))
            problems = []
            try:
                line = render(command, context)
                run = subprocess.run(
                    ["bash", "-c", line], cwd=job, env=clean, capture_output=True, text=True
                )
                rows = log.read_text().splitlines() if log.exists() else []
                calls = [json.loads(row) for row in rows]
                if run.returncode != 0:
                    problems.append(f"exit {run.returncode}: {run.stderr.strip()}")
                if calls != [expected]:
                    problems.append(f"virnucpro got {calls}, expected [{expected}]")
                staged = job / f"input.{ext}"
                if not staged.is_symlink() or Path(os.readlink(staged)) != dataset:
                    problems.append(f"input.{ext} does not link to the dataset")
                if list(job.rglob("PWNED")) or list(Path.cwd().glob("PWNED")):
                    problems.append("a backquote in a path ran")
            except Exception as error:  # a template that does not render is a failure too
                problems.append(f"{type(error).__name__}: {error}")
            if problems:
                failed += 1
                print(f"  FAIL {name}")
                for problem in problems:
                    print(f"    {problem}")
                print(f"    command: {line if 'line' in locals() else '(not rendered)'}")
            else:
                passed += 1
                print(f"  PASS {name}")

        def argv(words: str) -> list[str]:
            """Expected arguments; M300 and M500 stand for the model options of each size, R
            for the default region options."""
            out: list[str] = []
            for word in words.split():
                if word in ("M300", "M500"):
                    out += [*models, "--classifier", fields[f"classifier_{word[1:]}"]]
                elif word == "R":
                    out += ["--region-min-chunks", "2", "--region-max-gap", "1"]
                else:
                    out.append(word)
            return out

        case(
            "300 bp, gzip FASTA, viral FASTA, defaults",
            {"chunk_size": "300", "viral_fasta": Boolean(True)},
            {},
            argv(
                "predict input.fasta.gz --chunk-size 300 --out out M300 --attention flash-varlen R"
                " --viral-fasta --workers 1 --no-progress"
            ),
            ext="fasta.gz",
        )
        case(
            "500 bp, FASTQ, GALAXY_SLOTS and VIRNUCPRO_DEVICE from the job environment",
            {"attention": "v1-bmm"},
            {"GALAXY_SLOTS": "4", "VIRNUCPRO_DEVICE": "cuda:1"},
            argv(
                "predict input.fastqsanger --chunk-size 500 --out out M500 --attention v1-bmm R"
                " --device cuda:1 --workers 4 --no-progress"
            ),
            ext="fastqsanger",
        )
        case(
            "a device and dtype chosen by the user win over VIRNUCPRO_DEVICE",
            {"advanced": {"dtype": "bf16", "device": "cpu"}},
            {"VIRNUCPRO_DEVICE": "cuda"},
            argv(
                "predict input.fasta --chunk-size 500 --out out M500 --attention flash-varlen R"
                " --device cpu --dtype bf16 --workers 1 --no-progress"
            ),
        )
        case(
            "queue mode: both variables set -> submit --wait",
            {"viral_fasta": Boolean(True), "advanced": {"dtype": "fp16", "device": "cuda"}},
            {
                "VIRNUCPRO_REDIS_URL": "redis://127.0.0.1:6390/0",
                "VIRNUCPRO_DATABASE_URL": "sqlite:////tmp/x.db",
                "VIRNUCPRO_DEVICE": "cuda",
                "GALAXY_SLOTS": "8",
            },
            argv(
                "submit input.fasta --chunk-size 500 --wait --out out M500"
                " --attention flash-varlen R --viral-fasta"
            ),
        )
        case(
            "region options chosen by the user",
            {"regions": {"min_chunks": "1", "max_gap": "0"}},
            {},
            argv(
                "predict input.fasta --chunk-size 500 --out out M500 --attention flash-varlen"
                " --region-min-chunks 1 --region-max-gap 0 --workers 1 --no-progress"
            ),
        )
        case(
            "embeddings in float16",
            {"embeddings_dtype": "float16"},
            {},
            argv(
                "predict input.fasta --chunk-size 500 --out out M500 --attention flash-varlen R"
                " --embeddings float16 --workers 1 --no-progress"
            ),
        )
        case(
            "queue mode with embeddings",
            {"embeddings_dtype": "float32"},
            {
                "VIRNUCPRO_REDIS_URL": "redis://127.0.0.1:6390/0",
                "VIRNUCPRO_DATABASE_URL": "sqlite:////tmp/x.db",
            },
            argv(
                "submit input.fasta --chunk-size 500 --wait --out out M500"
                " --attention flash-varlen R --embeddings float32"
            ),
        )
        case(
            "only one queue variable set -> predict",
            {},
            {"VIRNUCPRO_REDIS_URL": "redis://127.0.0.1:6390/0"},
            argv(
                "predict input.fasta --chunk-size 500 --out out M500 --attention flash-varlen R"
                " --workers 1 --no-progress"
            ),
        )
    # not the "N passed, N failed" form: that line is the Galaxy tests' alone
    print(f"command checks: {passed} of {passed + failed} right")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "galaxy_tool/virnucpro.xml"))
