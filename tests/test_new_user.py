"""What a new user hits first: demo marks, file modes, reused and interrupted output folders,
early failures, input formats, RNA, model-file errors, the command line, provenance."""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import lzma
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from models_for_tests import CONFORMANCE, DemoModels, model_args

from virnucpro_worker.interfaces.cli import build_parser, main
from virnucpro_worker.models.classifier import convert_classifier, load_classifier
from virnucpro_worker.pipeline.outputs import (
    DEMO_BANNER,
    DEMO_NOTICE_FILE,
    HIGHEST_SCORE_FILE,
    PREDICTIONS_FILE,
    RUN_FILE,
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
)

WITH_ORFS = CONFORMANCE / "test_with_orfs.fa"
DEMO_INPUT = Path(__file__).parents[1] / "examples" / "demo_contigs.fa"
RESULTS = (PREDICTIONS_FILE, HIGHEST_SCORE_FILE, SUMMARY_FILE)
CALL_COLUMN = SUMMARY_COLUMNS.index("call")
CLI = [sys.executable, "-m", "virnucpro_worker.interfaces.cli"]


def predict(models: DemoModels, source: Path | str, out: Path, *extra: str) -> int:
    options = ["--chunk-size", "500", "--out", str(out), "--no-progress", *model_args(models)]
    return main(["predict", str(source), *options, *extra])


def cli(*arguments: str, stdin: bytes | None = None, env: dict | None = None):
    return subprocess.run(
        [*CLI, *arguments],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The error, alone on stderr but for the progress log (INFO lines)."""
    lines = [line for line in result.stderr.decode().splitlines() if not line.startswith("INFO: ")]
    assert len(lines) == 1 and lines[0].startswith("virnucpro: error: "), lines
    return lines[0]


# 1. Demo results are always marked -----------------------------------------------------------


def test_demo_files_passed_as_ordinary_files_still_mark_the_results(demo_models, tmp_path):
    assert predict(demo_models, WITH_ORFS, tmp_path) == 0
    assert (tmp_path / DEMO_NOTICE_FILE).exists()
    assert (tmp_path / SUMMARY_FILE).read_text().splitlines()[0] == DEMO_BANNER
    run = json.loads((tmp_path / RUN_FILE).read_text())
    assert run["demo_models"] is True and "warning" in run
    assert {run["models"][name]["demo"] for name in ("esm2", "dnabert_s", "classifier")} == {True}


def test_the_mark_survives_conversion_and_real_files_have_none(demo_models, tmp_path):
    _, converted = convert_classifier(demo_models.classifier, tmp_path / "500.safetensors")
    assert converted.demo
    from virnucpro_worker.models.classifier import MLPClassifier, save_original_pickle

    save_original_pickle(MLPClassifier(96, 8), tmp_path / "real.pth")
    assert not load_classifier(tmp_path / "real.pth").demo


def test_demo_runs_show_both_calls(tmp_path):
    """`make demo`'s input with the built-in demo models: a newcomer sees virus rows too."""
    options = ["--chunk-size", "500", "--out", str(tmp_path / "o"), "--demo-models"]
    result = cli("predict", str(DEMO_INPUT), *options, env={"VIRNUCPRO_CACHE": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    calls = [
        line.split("\t")[CALL_COLUMN]
        for line in (tmp_path / "o" / SUMMARY_FILE).read_text().splitlines()[2:]
    ]
    assert {"virus", "others", "unscored"} <= set(calls)
    frames = (tmp_path / "o" / PREDICTIONS_FILE).read_text().splitlines()[1:]
    assert any("\tvirus\t" in row for row in frames) and any("\tothers\t" in row for row in frames)


# 2. File modes honour the umask --------------------------------------------------------------


def test_every_written_file_honours_the_umask(demo_models, tmp_path):
    script = f"""
import os, sys
os.umask(0o002)
from virnucpro_worker.interfaces.cli import main
models = {model_args(demo_models)!r}
out = {str(tmp_path)!r}
codes = [
    main(["predict", {str(WITH_ORFS)!r}, "--chunk-size", "500", "--out", out + "/predict",
          "--keep-intermediate", "--viral-fasta", "--no-progress", *models]),
    main(["prepare", {str(WITH_ORFS)!r}, "--chunk-size", "500", "--out", out + "/prepare"]),
    main(["demo-models", "--out", out + "/demo"]),
    main(["convert-classifier", {str(demo_models.classifier)!r}, out + "/c.safetensors"]),
]
sys.exit(max(codes))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) > 15
    modes = {str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode) for path in files}
    assert set(modes.values()) == {0o664}, modes


# 3. A reused or interrupted output folder is never a mix ------------------------------------


def test_a_reused_folder_holds_only_the_latest_run(demo_models, tmp_path):
    other = tmp_path / "other_input.fa"
    other.write_bytes((CONFORMANCE / "test_fixed_500bp.fa").read_bytes())
    out = tmp_path / "out"
    assert predict(demo_models, WITH_ORFS, out, "--keep-intermediate", "--viral-fasta") == 0
    assert (out / "test_with_orfs_merged.pt").exists()
    (out / "notes.txt").write_text("the user's own file\n")
    assert predict(demo_models, other, out) == 0
    run = json.loads((out / RUN_FILE).read_text())
    assert sorted(path.name for path in out.iterdir()) == sorted([*run["outputs"], "notes.txt"])
    assert not list(out.glob("test_with_orfs*")) and not (out / "viral_sequences.fa").exists()
    assert run["input"]["path"] == str(other.resolve())


@pytest.mark.parametrize(("signal_number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_leaves_the_previous_run_untouched(
    demo_models, tmp_path, signal_number, code
):
    out = tmp_path / "out"
    assert predict(demo_models, WITH_ORFS, out) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    big = tmp_path / "big.fa"
    unit = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA" * 15
    big.write_text("".join(f">r{i}\n{unit}\n" for i in range(20000)))
    process = subprocess.Popen(
        [
            *CLI,
            "predict",
            str(big),
            "--chunk-size",
            "500",
            "--out",
            str(out),
            *model_args(demo_models),
        ],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(out.glob(".virnucpro-run-*")):  # the run is writing its files
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal_number)
    assert process.wait(timeout=60) == code, process.stderr.read()
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


# 4. Fail before the models load --------------------------------------------------------------

FAST_FAILURES = {
    "output folder under a file": (
        ["predict", str(WITH_ORFS), "--chunk-size", "500", "--out", "{file}/sub", "--demo-models"],
        "cannot write there (Not a directory)",
    ),
    "output folder that cannot be made": (
        [
            "predict",
            str(WITH_ORFS),
            "--chunk-size",
            "500",
            "--out",
            "/proc/virnucpro",
            "--demo-models",
        ],
        "cannot write there",
    ),
    "unwritable report": (
        ["compare-attention", str(WITH_ORFS), "--report", "/proc/report.json", "--demo-models"],
        "/proc/report.json",
    ),
    "unknown backend": (
        [
            "compare-attention",
            str(WITH_ORFS),
            "--backends",
            "flash-varlen",
            "nope",
            "--demo-models",
        ],
        "unknown attention backend 'nope'",
    ),
    "missing input": (
        [
            "predict",
            "{tmp}/missing.fa",
            "--chunk-size",
            "500",
            "--out",
            "{tmp}/out",
            "--demo-models",
        ],
        "{tmp}/missing.fa: no such file",
    ),
    "a folder as input": (
        ["predict", "{tmp}", "--chunk-size", "500", "--out", "{tmp}/out", "--demo-models"],
        "{tmp}: not a regular file",
    ),
    "a folder as input to submit": (
        ["submit", "{tmp}", "--chunk-size", "500", "--out", "{tmp}/out", "--demo-models"],
        "{tmp}: not a regular file",
    ),
    "Redis URL without a scheme": (
        ["status", "1", "--redis", "localhost:6379", "--db", "sqlite:///{tmp}/new/x.db"],
        "--redis: 'localhost:6379' is not a URL of the form redis://HOST:PORT/DB",
    ),
    "database URL that is a file name": (
        ["submit", str(WITH_ORFS), "--chunk-size", "500", "--db", "{tmp}/x.db", "--demo-models"],
        "--db: '{tmp}/x.db' is not a URL of the form sqlite:///FILE",
    ),
    "a read of a database that does not exist": (
        ["jobs", "--db", "sqlite:///{tmp}/no_such_dir/x.db"],
        "database sqlite:///{tmp}/no_such_dir/x.db: no such file",
    ),
    "results from a database that does not exist": (
        ["results", "1", "--out", "{tmp}/out", "--db", "sqlite:///{tmp}/no_such_dir/x.db"],
        "database sqlite:///{tmp}/no_such_dir/x.db: no such file",
    ),
}


@pytest.mark.parametrize("case", list(FAST_FAILURES))
def test_these_fail_before_any_model_work(case, tmp_path):
    """One line, exit 2, not even torch imported (so well under a second), nothing made."""
    arguments, message = FAST_FAILURES[case]
    (tmp_path / "file").write_text("")
    arguments = [
        a.replace("{file}", str(tmp_path / "file")).replace("{tmp}", str(tmp_path))
        for a in arguments
    ]
    script = (
        "import sys; from virnucpro_worker.interfaces.cli import main; "
        f"code = main({arguments!r}); print(code, 'torch' in sys.modules)"
    )
    env = {**os.environ, "VIRNUCPRO_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env)
    assert result.stdout.decode().split() == ["2", "False"], result.stderr
    assert message.replace("{tmp}", str(tmp_path)) in one_error_line(result)
    assert [path.name for path in tmp_path.iterdir()] == ["file"]  # no folder, no database


# 5. Input formats ----------------------------------------------------------------------------


def _fastq(fasta: bytes) -> bytes:
    records = [entry.split(b"\n", 1) for entry in fasta.split(b">")[1:]]
    out = []
    for header, body in records:
        sequence = body.replace(b"\n", b"")
        out.append(b"@%s\n%s\n+\n%s\n" % (header, sequence, b"I" * len(sequence)))
    return b"".join(out)


VARIANTS = {
    "gzip named .fa": lambda data: gzip.compress(data),
    "bzip2": lambda data: bz2.compress(data),
    "xz": lambda data: lzma.compress(data),
    "byte-order mark": lambda data: b"\xef\xbb\xbf" + data,
    "classic Mac line ends": lambda data: data.replace(b"\n", b"\r"),
    "FASTQ": _fastq,
    "gzipped FASTQ, CRLF": lambda data: gzip.compress(_fastq(data).replace(b"\n", b"\r\n")),
}


@pytest.fixture(scope="module")
def reference_results(demo_models, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference")
    assert predict(demo_models, DEMO_INPUT, out) == 0
    return {name: (out / name).read_bytes() for name in RESULTS}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_input_form_gives_the_same_results(demo_models, reference_results, variant, tmp_path):
    path = tmp_path / "input.fa"  # the name says nothing: the content does
    path.write_bytes(VARIANTS[variant](DEMO_INPUT.read_bytes()))
    assert predict(demo_models, path, tmp_path / "out") == 0
    for name in RESULTS:
        assert (tmp_path / "out" / name).read_bytes() == reference_results[name], name


def test_standard_input(demo_models, reference_results, tmp_path):
    options = ["--chunk-size", "500", "--out", str(tmp_path / "o"), *model_args(demo_models)]
    result = cli("predict", "-", *options, stdin=gzip.compress(DEMO_INPUT.read_bytes()))
    assert result.returncode == 0, result.stderr
    for name in RESULTS:
        assert (tmp_path / "o" / name).read_bytes() == reference_results[name], name
    run = json.loads((tmp_path / "o" / RUN_FILE).read_text())
    assert run["input"]["path"] == "-" and len(run["input"]["sha256"]) == 64


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02binary" * 40, "not FASTA or FASTQ: binary data"),
        (b"id,sequence\nx,ACGT\n", "not FASTA or FASTQ: text whose first line is 'id,sequence'"),
        (gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(200)), "binary data"),
    ],
)
def test_other_files_are_named_for_what_they_are(demo_models, tmp_path, content, message):
    path = tmp_path / "input.fa"
    path.write_bytes(content)
    result = cli(
        "predict",
        str(path),
        "--chunk-size",
        "500",
        "--out",
        str(tmp_path / "o"),
        *model_args(demo_models),
    )
    assert result.returncode == 2 and message in one_error_line(result)


# 6. RNA and untranslatable codons ------------------------------------------------------------


def test_rna_is_read_as_dna_and_said_so(demo_models, tmp_path):
    rna = tmp_path / "rna.fa"
    rna.write_text(WITH_ORFS.read_text().replace("T", "U").replace(">synUheUic", ">synthetic"))
    assert predict(demo_models, WITH_ORFS, tmp_path / "dna") == 0
    assert predict(demo_models, rna, tmp_path / "rna") == 0
    for name in (PREDICTIONS_FILE, HIGHEST_SCORE_FILE):
        assert (tmp_path / "rna" / name).read_bytes() == (tmp_path / "dna" / name).read_bytes()
    run = json.loads((tmp_path / "rna" / RUN_FILE).read_text())
    assert run["counts"]["rna_records"] == 2
    result = cli(
        "predict",
        str(rna),
        "--chunk-size",
        "500",
        "--out",
        str(tmp_path / "o"),
        *model_args(demo_models),
    )
    assert "2 records in RNA letters: U read as T" in result.stdout.decode()


def test_codons_with_n_are_dropped_and_counted(demo_models, tmp_path):
    path = tmp_path / "n.fa"
    path.write_text(">a\nATGGCCNNNGCTGAAAAACTGGGCCGTATTGAC\n")
    assert predict(demo_models, path, tmp_path / "o") == 0
    run = json.loads((tmp_path / "o" / RUN_FILE).read_text())
    assert run["counts"]["dropped_codons"] >= 1


# 7. Model-file errors say what is wrong ------------------------------------------------------


def _plain_pickle(path: Path) -> None:
    import collections
    import pickle

    path.write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=4))


MODEL_FILE_PROBLEMS = {
    "text": (lambda p: p.write_text("hello\n"), "it is a text file"),
    "random bytes": (
        lambda p: p.write_bytes(bytes(range(256))[::-1] * 4),
        "binary data of no known format",
    ),
    "plain pickle": (_plain_pickle, "a plain Python pickle, not a torch.save file"),
}


@pytest.mark.parametrize("which", ["esm", "classifier", "dnabert"])
@pytest.mark.parametrize("problem", list(MODEL_FILE_PROBLEMS))
def test_model_file_errors_are_one_clear_line(demo_models, tmp_path, which, problem):
    import shutil

    make, message = MODEL_FILE_PROBLEMS[problem]
    folder = tmp_path / "models"
    shutil.copytree(demo_models.folder, folder)
    target = {
        "esm": folder / demo_models.esm.name,
        "classifier": folder / "500_model.pth",
        "dnabert": folder / demo_models.dnabert.name / "pytorch_model.bin",
    }[which]
    if which == "dnabert":
        (target.parent / "model.safetensors").unlink()
    make(target)
    result = cli(
        "predict",
        str(WITH_ORFS),
        "--chunk-size",
        "500",
        "--out",
        str(tmp_path / "o"),
        "--models",
        str(folder),
    )
    line = one_error_line(result)
    assert str(target) in line and message in line
    assert "weights_only" not in line and "Warning" not in result.stderr.decode()


# 8. The command line -------------------------------------------------------------------------


def test_every_option_has_help():
    def actions(parser):
        for action in parser._actions:
            yield parser.prog, action
            if isinstance(action, argparse._SubParsersAction):
                for subparser in action.choices.values():
                    yield from actions(subparser)

    missing = [
        f"{prog} {action.dest}"
        for prog, action in actions(build_parser())
        if not action.help and action.dest not in ("help", "command")
    ]
    assert missing == []


@pytest.mark.parametrize("value", ["-3", "0", "two"])
def test_numbers_are_checked(value, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["prepare", str(WITH_ORFS), "--chunk-size", "500", "--out", "x", "--workers", value])
    assert stopped.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_quiet_and_verbose(demo_models, tmp_path):
    arguments = ["predict", str(WITH_ORFS), "--chunk-size", "500", "--out", str(tmp_path / "o")]
    arguments += model_args(demo_models)
    normal = cli(*arguments).stderr.decode()
    quiet = cli("-q", *arguments).stderr.decode()
    verbose = cli("-v", *arguments).stderr.decode()
    assert "INFO: loading models" in normal and "INFO" not in quiet and "DEBUG" in verbose
    assert "DEMO MODELS" in quiet  # warnings stay


def test_backends_for_a_device_this_machine_lacks(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["backends", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "CUDA is not available" in out and "flash-varlen" in out and "v1-bmm" in out


def test_convert_classifier_names_the_source_format(demo_models, tmp_path, capsys):
    assert (
        main(["convert-classifier", str(demo_models.classifier), str(tmp_path / "c.safetensors")])
        == 0
    )
    assert "from the original-pickle file" in capsys.readouterr().out


def test_compare_attention_warns_about_demo_models(demo_models, caplog):
    assert main(["compare-attention", str(WITH_ORFS), *model_args(demo_models)]) == 0
    assert "DEMO MODELS" in caplog.text


# 9. Provenance and counts --------------------------------------------------------------------


def test_run_json_says_how_the_result_was_asked_for(demo_models, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('attention = "flash-varlen"\n')
    monkeypatch.setenv("VIRNUCPRO_CONFIG", str(config))
    monkeypatch.chdir(CONFORMANCE)
    assert predict(demo_models, "test_with_orfs.fa", tmp_path / "o") == 0
    run = json.loads((tmp_path / "o" / RUN_FILE).read_text())
    assert (
        run["command_line"][:3] == ["virnucpro", *sys.argv[1:3]]
        or run["command_line"][0] == "virnucpro"
    )
    assert run["config_file"]["path"] == str(config) and len(run["config_file"]["sha256"]) == 64
    assert run["input"]["path"] == str(WITH_ORFS.resolve())
    assert re.fullmatch(r".*T\d\d:\d\d:\d\d\.\d{3}\+00:00", run["started"])


def test_the_summary_line_counts_what_the_files_hold(demo_models, tmp_path):
    out = tmp_path / "o"
    result = cli(
        "predict",
        str(DEMO_INPUT),
        "--chunk-size",
        "500",
        "--out",
        str(out),
        *model_args(demo_models),
    )
    line = result.stdout.decode().strip()
    numbers = dict(
        (name, int(value))
        for value, name in re.findall(
            r"(\d+) (records called virus|records|scored chunks|chunks|kept frames|viral)", line
        )
    )
    frames = (out / PREDICTIONS_FILE).read_text().splitlines()[1:]
    chunks = (out / HIGHEST_SCORE_FILE).read_text().splitlines()[1:]
    records = (out / SUMMARY_FILE).read_text().splitlines()[2:]
    assert numbers["records"] == len(records)
    assert numbers["chunks"] == sum(int(row.split("\t")[2]) for row in records)
    assert numbers["kept frames"] == len(frames)
    assert numbers["scored chunks"] == len(chunks)
    assert numbers["viral"] == sum(row.endswith("True") for row in chunks)
    assert numbers["records called virus"] == sum(
        row.split("\t")[CALL_COLUMN] == "virus" for row in records
    )


# 10. Leftovers, secrets, the service's commands (issue 24) -----------------------------------


def make_input(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "input.fa"
    path.write_bytes(content)
    return path


GOOD_RECORD = b">good\n" + b"ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA" * 9 + b"\n"
FAILED_COMMANDS = {
    "protein input": (["predict", "{input}"], b">p1\nMKVLAAGGHW\n", "is not a nucleotide"),
    "an empty file": (["predict", "{input}"], b"", "the file is empty"),
    "duplicate ids": (["predict", "{input}"], b">a\nACGT\n>a\nACGT\n", "duplicate record id"),
    "an unknown backend": (["predict", "{input}", "--attention", "nope"], GOOD_RECORD, "nope"),
    "an over-long record": (
        ["predict", "{input}"],
        GOOD_RECORD,
        "over this site's limit of 100",
    ),
    "results of an unknown job": (["results", "7"], GOOD_RECORD, "no job 7 in database"),
}


@pytest.mark.parametrize("case", list(FAILED_COMMANDS))
def test_a_failed_command_leaves_no_folder_and_no_database(
    case, demo_models, tmp_path, capsys, monkeypatch
):
    arguments, content, message = FAILED_COMMANDS[case]
    monkeypatch.setenv("VIRNUCPRO_MAX_RECORD_LENGTH", "100" if "long" in case else "1000000")
    work = tmp_path / "work"
    work.mkdir()
    path = make_input(tmp_path, content)
    database = f"sqlite:///{work}/new/jobs.db"
    if arguments[0] == "results":  # a database that exists, with no such job
        assert main(["db", "upgrade", "--db", f"sqlite:///{tmp_path}/jobs.db"]) == 0
        database = f"sqlite:///{tmp_path}/jobs.db"
    else:
        arguments = [*arguments, "--chunk-size", "500", *model_args(demo_models)]
    arguments = [a.replace("{input}", str(path)) for a in arguments]
    capsys.readouterr()
    assert main([*arguments, "--out", str(work / "out" / "deeper"), "--db", database]) == 2
    assert message in one_line_of(capsys.readouterr().err)
    assert list(work.iterdir()) == []


def one_line_of(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if not line.startswith(("INFO: ", "WARNING: "))]
    assert len(lines) == 1 and lines[0].startswith("virnucpro: error: "), lines
    return lines[0]


@pytest.fixture
def redis_url(tmp_path):
    from services import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    yield server.url
    server.kill()


def test_submit_of_bad_input_creates_no_database(redis_url, tmp_path, capsys):
    path = make_input(tmp_path, b">p1\nMKVLAAGGHW\n")
    new = tmp_path / "new.db"
    arguments = ["submit", str(path), "--chunk-size", "500", "--demo-models"]
    assert main([*arguments, "--redis", redis_url, "--db", f"sqlite:///{new}"]) == 2
    assert "is not a nucleotide" in one_line_of(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.fa", "redis"]


def test_ctrl_c_on_submit_wait_says_how_to_go_on_and_leaves_no_folder(redis_url, tmp_path):
    """No worker: after NO_WORKER_AFTER seconds the wait says so; Ctrl-C then says the job
    stays queued and how to fetch its results, and the empty --out folder goes."""
    database = f"sqlite:///{tmp_path}/jobs.db"
    script = (
        "import sys; from virnucpro_worker.interfaces.cli import main, service; "
        "service.NO_WORKER_AFTER = 1; sys.exit(main(sys.argv[1:]))"
    )
    arguments = ["submit", str(WITH_ORFS), "--chunk-size", "500", "--demo-models"]
    arguments += ["--out", str(tmp_path / "out"), "--redis", redis_url, "--db", database]
    process = subprocess.Popen(
        [sys.executable, "-c", script, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job = process.stdout.readline().strip()
    lines = []
    while not any("no worker has taken it" in line for line in lines):
        lines.append(process.stderr.readline())
        assert lines[-1], lines
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"INFO: job {job}: 2 records, 2 chunks in 1 shard\n" in lines
    assert f"job {job} stays in the queue" in rest and f"virnucpro results {job} --out" in rest
    assert rest.rstrip().endswith("virnucpro: interrupted")
    assert not (tmp_path / "out").exists() and (tmp_path / "jobs.db").exists()


def test_shards_are_whole_blocks_and_submit_says_how_many(redis_url, tmp_path, caplog):
    """--shard-chunks 20 on a 110-chunk input under one block: one shard, and submit says
    so (help and README say a shard holds whole blocks of block_bases)."""
    unit = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA" * 16  # 528 bp: 2 chunks of 500 bp
    path = make_input(tmp_path, "".join(f">r{i}\n{unit}\n" for i in range(55)).encode())
    database = f"sqlite:///{tmp_path}/jobs.db"
    arguments = ["submit", str(path), "--chunk-size", "500", "--demo-models", "--shard-chunks"]
    caplog.set_level("INFO")
    assert main([*arguments, "20", "--redis", redis_url, "--db", database]) == 0
    assert (
        "55 records, 110 chunks in 1 shard (a shard holds whole blocks of 2,000,000 bases: "
        "--shard-chunks 20 does not cut a block)" in caplog.text
    )
    assert "A shard holds whole blocks of block_bases bases" in _help_of("submit")


def _help_of(command: str) -> str:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(commands.choices[command].format_help().split())


def _stored_job(database: str, state: str) -> int:
    from virnucpro_worker.pipeline.parameters import JobParameters, ModelRequest
    from virnucpro_worker.sequences.fasta import FastaRecord
    from virnucpro_worker.store.jobs import InputFile
    from virnucpro_worker.store.models import State
    from virnucpro_worker.store.shards import claim_shard, fail_shard
    from virnucpro_worker.store.store import Store

    store = Store(database)
    job = store.create_job(
        [FastaRecord("a", "ACGT" * 100)],
        parameters=JobParameters(500, "v1-bmm", 2_000_000, ModelRequest(demo=True)),
        input_file=InputFile("a.fa", "0" * 64, 401),
        shard_chunks=None,
        state=State.QUEUED,
    )
    if state == "failed":  # its one attempt failed
        (shard,) = store.shards(job)
        place = {"worker": "w", "host": "h", "device": "cpu", "lease": 30}
        store.transaction(lambda session: claim_shard(session, shard.id, **place))
        store.transaction(lambda session: fail_shard(session, shard.id, "w", "boom", 0))
    return job


def test_status_exits_1_for_a_failed_job_and_cancel_says_what_it_did(redis_url, tmp_path, capsys):
    database = f"sqlite:///{tmp_path}/jobs.db"
    options = ["--redis", redis_url, "--db", database]
    failed, queued = _stored_job(database, "failed"), _stored_job(database, "queued")
    assert main(["status", str(failed), *options]) == 1
    assert "failed" in capsys.readouterr().out
    assert main(["status", str(queued), *options]) == 0
    assert main(["cancel", str(failed), *options]) == 1
    err = capsys.readouterr().err
    assert f"job {failed} had already failed: nothing to cancel" in err
    assert main(["cancel", str(queued), *options]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"job {queued}: cancelled,") and line.count("cancelled") == 1
    assert main(["cancel", str(queued), *options]) == 0
    assert capsys.readouterr().out.strip() == f"job {queued}: already cancelled"


def test_jobs_print_times_alike_on_sqlite_and_postgresql(database_url, capsys):
    for _ in range(3):
        _stored_job(database_url, "failed")
    assert main(["jobs", "--db", database_url, "--last", "2"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [row[0] for row in rows] == ["2", "3"]  # the newest two
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", row[7]), row
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", row[8]), row


def test_make_demo_lists_only_the_last_jobs():
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    demo = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "virnucpro jobs --last" in demo and "virnucpro jobs\n" not in demo + "\n"


@pytest.mark.parametrize(
    "arguments",
    [
        ["results", "1", "--out", "o", "--bogus", "redis://:hunter2@host/0"],
        ["status", "1", "--redis", "localhost:hunter2@host:6379"],
        ["jobs", "--db", "mysql://me:hunter2@host/db"],
        ["jobs", "--nope=postgresql://me:hunter2@host/db"],
    ],
)
def test_no_error_shows_a_password(arguments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(*arguments)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "hunter2" not in result.stderr.decode() and "***" in line


SERVICE_COMMANDS = {
    "db": ["db", "current"],
    "jobs": ["jobs"],
    "results": ["results", "1", "--out", "o"],
    "submit": ["submit", "in.fa", "--chunk-size", "500"],
    "status": ["status", "1"],
    "cancel": ["cancel", "1"],
    "recover": ["recover"],
    "worker": ["worker"],
}


@pytest.mark.parametrize("command", list(SERVICE_COMMANDS))
def test_every_service_command_takes_redis_and_db_and_global_options_after_it(command):
    arguments = [*SERVICE_COMMANDS[command], "--redis", "redis://h:1/0", "--db", "sqlite:///x"]
    args = build_parser().parse_args([*arguments, "-v", "--config", "c.toml"])
    assert (args.redis_url, args.database_url) == ("redis://h:1/0", "sqlite:///x")
    assert (args.verbose, args.quiet, args.config) == (True, False, "c.toml")
    assert build_parser().parse_args(["-q", *arguments]).quiet


def test_verbose_and_quiet_on_both_sides_are_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["-v", "jobs", "-q"])
    assert stopped.value.code == 2 and "-v and -q" in capsys.readouterr().err


def test_predict_db_without_url_before_the_input(demo_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIRNUCPRO_DATABASE_URL", f"sqlite:///{tmp_path}/jobs.db")
    options = ["--chunk-size", "500", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(["predict", "--db", str(WITH_ORFS), *options, *model_args(demo_models)]) == 0
    assert main(["jobs"]) == 0
    assert "\tsucceeded\t" in capsys.readouterr().out


def test_empty_standard_input_is_named_so(demo_models, tmp_path, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    options = ["--chunk-size", "500", "--out", str(tmp_path / "o"), *model_args(demo_models)]
    assert main(["predict", "-", *options]) == 2
    assert one_line_of(capsys.readouterr().err) == (
        "virnucpro: error: standard input: the file is empty"
    )
    assert not (tmp_path / "o").exists()


def _terminal_lines(command: list[str], env: dict) -> list[str]:
    """What a terminal shows of `command`'s stderr, each redraw of the bar a line."""
    import pty
    import select

    main_end, terminal = pty.openpty()
    process = subprocess.Popen(command, stderr=terminal, stdout=subprocess.DEVNULL, env=env)
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([main_end], [], [], 0.1)
        try:
            piece = os.read(main_end, 1 << 16) if ready else b""
        except OSError:  # the terminal closed
            break
        if not piece and process.poll() is not None:
            break
        output += piece
    os.close(main_end)
    assert process.wait() == 0, output
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode("utf-8", "replace"))
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def test_on_a_terminal_the_bar_moves_and_warnings_print_above_it(demo_models, tmp_path):
    """An input under one block: the bar pulses with a running clock until the block is
    done; the demo warning is a line of its own, not written over the bar."""
    arguments = ["predict", str(DEMO_INPUT), "--chunk-size", "500", "--out", str(tmp_path / "o")]
    lines = _terminal_lines([*CLI, *arguments, *model_args(demo_models)], dict(os.environ))
    warnings = [line for line in lines if "DEMO MODELS" in line]
    assert warnings == ["WARNING: DEMO MODELS: these predictions are meaningless (random weights)"]
    bars = [line for line in lines if " records " in line]
    assert len({bar.split()[0] for bar in bars if "0/?" in bar}) > 1  # the spinner turned
    assert "24/24" in bars[-1]


def test_a_worker_s_log_lines_are_timed_and_name_the_backend_once(redis_url, demo_models, tmp_path):
    from services import Workers

    from virnucpro_worker.queue.client import Client
    from virnucpro_worker.settings import Settings

    database = f"sqlite:///{tmp_path}/jobs.db"
    client = Client(redis_url, database, Settings(block_bases=4000, shard_chunks=20))
    job = client.submit(DEMO_INPUT, 500, demo=True)
    assert client.status(job).shards > 2
    output = Workers(redis_url, database, demo_models.folder, block_bases=4000).run_burst()
    assert client.status(job).state == "succeeded"
    lines = output.splitlines()
    assert sum("attention backend" in line for line in lines) == 1, output
    timed = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (DEBUG|INFO|WARNING|ERROR): .*"
    assert lines and all(re.fullmatch(timed, line) for line in lines), output
