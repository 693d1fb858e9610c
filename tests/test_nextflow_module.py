"""The Nextflow modules in nextflow/modules/, run without Nextflow.

Nextflow and nf-test cannot be installed on CI's machines, so `nextflow_render` interprets the
Groovy of each process (directives, inputs, outputs, `when:`, `script:`, `stub:`) the way
Nextflow would for a given `meta`, `task.ext.args`, `task.ext.prefix`, `task.cpus` and
`task.accelerator`; the tests then run the rendered command in a temporary work folder (inputs
staged as links, as Nextflow does), against the real CLI and the demo models, and evaluate the
output declarations there: every non-optional output must match a file, optional ones exactly
when asked for, and the versions `eval` must print the package's version.

`nf-core modules lint` and the schema checks run in CI's lint step (.ci/nextflow/lint.sh).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from nextflow_render import (
    Accelerator,
    MissingOutput,
    NextflowProcess,
    ProcessError,
    Scope,
    Task,
    UnsupportedGroovy,
    evaluate,
    parse_expression,
    stage_inputs,
)
from safetensors.numpy import load_file
from services import RedisServer

import virnucpro_worker
from virnucpro_worker.pipeline.multiqc import CALLS_FILE, GENERAL_STATS_FILE

REPO = Path(__file__).resolve().parents[1]
NEXTFLOW = REPO / "nextflow"
MODULES = NEXTFLOW / "modules" / "virnucpro" / "virnucpro"
PREDICT = MODULES / "predict"
SUBMIT = MODULES / "submit"
FASTA = REPO / "tests" / "data" / "conformance" / "test_with_orfs.fa"
RECORDS = ["synthetic_seq_1", "synthetic_seq_2"]  # the two records of test_with_orfs.fa
MULTIQC_FILES = sorted([CALLS_FILE, GENERAL_STATS_FILE])  # as the output glob finds them
BIN = Path(sys.executable).parent  # the venv's bin: `virnucpro` lives next to this python


def cli_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="session")
def predict_module() -> NextflowProcess:
    return NextflowProcess(PREDICT / "main.nf")


@pytest.fixture(scope="session")
def submit_module() -> NextflowProcess:
    return NextflowProcess(SUBMIT / "main.nf")


@pytest.fixture(scope="session")
def cli_help() -> dict[str, str]:
    """`virnucpro --help` and each subcommand's --help ('' for a subcommand that is missing)."""
    texts = {}
    for command in ([], ["predict"], ["submit"], ["worker"]):
        done = subprocess.run(
            ["virnucpro", *command, "--help"], capture_output=True, text=True, env=cli_env()
        )
        texts[" ".join(command)] = done.stdout if done.returncode == 0 else ""
    return texts


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """The model folder layout, written by the CLI (`virnucpro demo-models --out DIR`)."""
    folder = tmp_path_factory.mktemp("nf-models") / "demo_models"
    subprocess.run(
        ["virnucpro", "demo-models", "--out", str(folder)],
        check=True,
        capture_output=True,
        env=cli_env(),
    )
    return folder


def argv(script: str) -> list[str]:
    """The words of a rendered one-command script, as bash would split them."""
    return shlex.split(script.replace("\\\n", " "), comments=True)


def option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def missing_options(words: list[str], help_text: str) -> list[str]:
    """Options of a rendered command that the installed CLI does not know (from its --help)."""
    if not help_text:
        return [" ".join(words[:2])]
    known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text))
    return [w for w in words if w.startswith("-") and w.split("=")[0] not in known]


def run_task(process, section, inputs, task, work: Path, timeout=300):
    """Stage, render, run with bash as Nextflow does, then collect the declared outputs."""
    stage_inputs(process, inputs, work)
    rendered = process.render(section, inputs, task)
    (work / ".command.sh").write_text(rendered.script)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", ".command.sh"],
        cwd=work,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
    )
    assert done.returncode == 0, f"{section} failed:\n{rendered.script}\n{done.stdout}{done.stderr}"
    outputs = {o.emit: o for o in process.collect_outputs(rendered, work, cli_env())}
    return rendered, outputs


def check_outputs(
    process, outputs, meta, expect_viral: bool, expect_embeddings: bool = False
) -> dict[str, Path]:
    """Every declared output: present (viral_fasta: only when asked), one file, meta first."""
    declared = [d.option("emit") for d in process.outputs]
    absent = set() if expect_viral else {"viral_fasta"}
    absent |= set() if expect_embeddings else {"embeddings"}
    assert set(outputs) == set(declared) - absent
    files = {}
    for emit, output in outputs.items():
        if emit.startswith("versions"):
            process_name, tool, version = output.values
            assert (process_name, tool) == (process.name, "virnucpro")
            assert output.topic == "versions"
            assert version == virnucpro_worker.__version__
            continue
        assert output.values[0] == meta
        if emit == "multiqc":  # the two custom-content files
            assert [path.name for path in output.values[1]] == MULTIQC_FILES
            files[emit] = output.values[1]
            continue
        (matched,) = output.values[1]
        files[emit] = matched
    return files


# --- the module's definition ---------------------------------------------------------------


@pytest.mark.parametrize("module_dir", [PREDICT, SUBMIT], ids=["predict", "submit"])
def test_definition_matches_meta_yml_and_release(module_dir):
    process = NextflowProcess(module_dir / "main.nf")
    meta = yaml.safe_load((module_dir / "meta.yml").read_text())
    assert process.name == meta["name"].upper()
    names = [[node.args[0] for _, node in declaration.elements] for declaration in process.inputs]
    meta_names = [
        [next(iter(e)) for e in item] if isinstance(item, list) else [next(iter(item))]
        for item in meta["input"]
    ]
    assert names == meta_names
    assert [d.option("emit") for d in process.outputs] == list(meta["output"])
    assert process.directive("tag", [[{"id": "s1"}, FASTA], *[[]] * (len(names) - 1)]) == ["s1"]
    (label,) = process.directive("label")
    assert label in {"process_single", "process_high"}
    (conda,) = process.directive("conda")
    assert Path(conda) == module_dir / "environment.yml"
    # one release: the container tag and the conda pin are the package's version
    (container,) = process.directive("container")
    assert container.rsplit(":", 1)[1] == virnucpro_worker.__version__
    environment = yaml.safe_load(Path(conda).read_text())
    pins = [p for d in environment["dependencies"] if isinstance(d, dict) for p in d["pip"]]
    assert f"virnucpro-worker=={virnucpro_worker.__version__}" in pins
    manifest = re.search(
        r"^\s*version\s*=\s*'([^']+)'", (NEXTFLOW / "nextflow.config").read_text(), re.M
    )
    assert manifest.group(1) == virnucpro_worker.__version__


def test_when_follows_task_ext_when(predict_module):
    inputs = [[{"id": "s1"}, FASTA], [], 500]
    assert predict_module.when_true(inputs, Task("VIRNUCPRO_PREDICT"))
    assert not predict_module.when_true(inputs, Task("VIRNUCPRO_PREDICT", ext={"when": False}))


@pytest.mark.parametrize("schema_pair", ["meta", "environment"])
def test_files_validate_against_kept_nf_core_schemas(schema_pair):
    import jsonschema  # CI's lint step validates them too

    schema = json.loads((NEXTFLOW / "schemas" / f"{schema_pair}-schema.json").read_text())
    for module_dir in (PREDICT, SUBMIT):
        name = "meta.yml" if schema_pair == "meta" else "environment.yml"
        jsonschema.validate(yaml.safe_load((module_dir / name).read_text()), schema)


# --- rendering ----------------------------------------------------------------------------------

RENDER_CASES = {
    # id: (task.ext, task.cpus, task.accelerator, models given)
    "cpu-defaults": ({}, 1, None, False),
    "cpu-args-prefix": ({"args": "--viral-fasta --dtype fp32", "prefix": "custom"}, 4, None, True),
    "gpu-1": ({"args": "--demo-models"}, 8, Accelerator(request=1), False),
    "gpu-2-prefix": ({"prefix": "s1_gpu"}, 16, Accelerator(request=2, type="nvidia-h200"), True),
}


@pytest.mark.parametrize("case", list(RENDER_CASES))
def test_script_renders_task_settings(predict_module, case, tmp_path):
    ext, cpus, accelerator, with_models = RENDER_CASES[case]
    models = tmp_path / "my_models" if with_models else []
    meta = {"id": "s1"}
    task = Task("VIRNUCPRO_PREDICT", cpus=cpus, ext=ext, accelerator=accelerator)
    rendered = predict_module.render("script", [[meta, FASTA], models, 500], task)
    words = argv(rendered.script)
    prefix = ext.get("prefix", meta["id"])
    assert words[:3] == ["virnucpro", "predict", FASTA.name]  # the staged name
    assert option(words, "--chunk-size") == "500"
    assert option(words, "--device") == ("cuda" if accelerator else "cpu")
    assert option(words, "--workers") == str(cpus)
    assert option(words, "--out") == prefix
    assert option(words, "--models") == ("my_models" if with_models else None)
    extra = shlex.split(ext.get("args", ""))
    assert words[len(words) - len(extra) :] == extra  # task.ext.args last: they can override
    assert "--no-progress" in words
    assert rendered.scope.globals["prefix"] == prefix  # what the output paths use


@pytest.mark.parametrize("section", ["script", "stub"])
def test_input_named_like_the_output_folder_is_an_error(predict_module, section, tmp_path):
    clash = tmp_path / "s1"
    clash.write_text(FASTA.read_text())
    with pytest.raises(ProcessError, match=r"task\.ext\.prefix"):
        predict_module.render(section, [[{"id": "s1"}, clash], [], 500], Task("VIRNUCPRO_PREDICT"))


def test_submit_renders_queue_options(submit_module):
    task = Task("VIRNUCPRO_SUBMIT", ext={"args": "--demo-models --viral-fasta"})
    redis, db = "redis://queue.example:6380/2", "postgresql://u:p@db.example/results"
    rendered = submit_module.render("script", [[{"id": "s1"}, FASTA], 300, redis, db], task)
    words = argv(rendered.script)
    assert words[:3] == ["virnucpro", "submit", FASTA.name]
    assert "--wait" in words
    assert (option(words, "--redis"), option(words, "--db")) == (redis, db)
    assert option(words, "--chunk-size") == "300"
    assert option(words, "--out") == "s1"
    assert words[-2:] == ["--demo-models", "--viral-fasta"]


# --- running: stub ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ext, accelerator",
    [
        ({}, None),
        (
            {"args": "--viral-fasta --embeddings float16", "prefix": "renamed"},
            Accelerator(request=1),
        ),
    ],
    ids=["plain", "viral-fasta-embeddings-prefix-gpu"],
)
@pytest.mark.parametrize("module_dir", [PREDICT, SUBMIT], ids=["predict", "submit"])
def test_stub_writes_every_declared_output(module_dir, ext, accelerator, tmp_path):
    process = NextflowProcess(module_dir / "main.nf")
    meta = {"id": "stubbed"}
    rest = [[], 500] if module_dir == PREDICT else [500, "redis://x", "postgresql://y"]
    task = Task(process.name, cpus=2, ext=ext, accelerator=accelerator)
    _, outputs = run_task(process, "stub", [[meta, FASTA], *rest], task, tmp_path)
    files = check_outputs(
        process,
        outputs,
        meta,
        expect_viral="--viral-fasta" in ext.get("args", ""),
        expect_embeddings="--embeddings" in ext.get("args", ""),
    )
    prefix = ext.get("prefix", meta["id"])
    paths = [
        path for emit, value in files.items() for path in (value if emit == "multiqc" else [value])
    ]
    assert {path.parent.name for path in paths} == {prefix}


def test_missing_required_output_fails_the_task(predict_module, tmp_path):
    task = Task("VIRNUCPRO_PREDICT")
    inputs = [[{"id": "s1"}, FASTA], [], 500]
    rendered, _ = run_task(predict_module, "stub", inputs, task, tmp_path)
    (tmp_path / "s1" / "run.json").unlink()
    with pytest.raises(MissingOutput, match="run_json"):
        predict_module.collect_outputs(rendered, tmp_path, cli_env())


# --- running: the real command against the demo models ----------------------------------------


def check_results(files: dict[str, Path], expect_viral: bool) -> None:
    summary_lines = [
        line for line in files["per_record"].read_text().splitlines() if not line.startswith("#")
    ]
    rows = list(csv.DictReader(summary_lines, delimiter="\t"))
    assert [row["record_id"] for row in rows] == RECORDS
    assert json.loads(files["run_json"].read_text())["counts"]["records"] == len(RECORDS)
    assert files["per_frame"].read_text().startswith("Sequence_ID\t")
    assert files["per_chunk"].read_text().startswith("Modified_ID\t")
    general_stats = json.loads(
        files["multiqc"][MULTIQC_FILES.index(GENERAL_STATS_FILE)].read_text()
    )
    (sample,) = general_stats["data"]
    assert general_stats["data"][sample]["records"] == len(RECORDS)
    assert sample == FASTA.name.removesuffix(".fa")
    regions = files["regions_bed"].read_text().splitlines()
    assert len(regions) == sum(int(row["viral_regions"]) for row in rows)
    assert files["regions_gff3"].read_text().startswith("##gff-version 3\n")
    assert f"id='count-records'>{len(RECORDS)}<" in files["report"].read_text()
    if expect_viral:
        viral = {row["record_id"] for row in rows if row["call"] == "virus"}
        written = re.findall(r"^>(\S+)", files["viral_fasta"].read_text(), re.MULTILINE)
        assert set(written) == viral


@pytest.mark.parametrize(
    "models, ext",
    [
        ("folder", {"args": "--viral-fasta"}),
        ("none", {"args": "--demo-models --viral-fasta --embeddings", "prefix": "demo_run"}),
    ],
    ids=["model-folder", "demo-models-arg"],
)
def test_script_runs_on_cpu(predict_module, cli_help, demo_model_dir, models, ext, tmp_path):
    meta = {"id": "orfs"}
    inputs = [[meta, FASTA], demo_model_dir if models == "folder" else [], 500]
    task = Task("VIRNUCPRO_PREDICT", cpus=2, ext=ext)
    words = argv(predict_module.render("script", inputs, task).script)
    missing = missing_options(words, cli_help["predict"])
    assert not missing, f"the module passes {', '.join(missing)}, which the CLI does not know"
    _, outputs = run_task(predict_module, "script", inputs, task, tmp_path)
    asked = "--embeddings" in ext["args"]
    files = check_outputs(predict_module, outputs, meta, True, expect_embeddings=asked)
    check_results(files, True)
    if asked:
        embeddings = load_file(files["embeddings"])
        assert len(embeddings["record"]) == len(files["per_frame"].read_text().splitlines()) - 1


@pytest.mark.gpu
def test_script_runs_on_the_gpu_when_the_task_has_an_accelerator(
    predict_module, cli_help, demo_model_dir, tmp_path
):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    meta = {"id": "orfs_gpu"}
    inputs = [[meta, FASTA], demo_model_dir, 500]
    task = Task("VIRNUCPRO_PREDICT", cpus=4, ext={}, accelerator=Accelerator(request=1))
    missing = missing_options(
        argv(predict_module.render("script", inputs, task).script), cli_help["predict"]
    )
    assert not missing, f"the module passes {', '.join(missing)}, which the CLI does not know"
    _, outputs = run_task(predict_module, "script", inputs, task, tmp_path)
    files = check_outputs(predict_module, outputs, meta, expect_viral=False)
    check_results(files, False)
    assert json.loads(files["run_json"].read_text())["device"].startswith("cuda")


# --- running: queue mode (virnucpro submit --wait, a burst worker, a private Redis) --------------


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own on a free port (never the machine's shared one)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server.url
    server.kill()


def test_queue_mode_runs_through_a_burst_worker(
    cli_help, submit_module, private_redis, postgres_url, tmp_path
):
    results_db_url = postgres_url
    meta = {"id": "queued"}
    inputs = [[meta, FASTA], 500, private_redis, results_db_url]
    task = Task("VIRNUCPRO_SUBMIT", cpus=1, ext={"args": "--demo-models --viral-fasta"})
    missing = missing_options(
        argv(submit_module.render("script", inputs, task).script), cli_help["submit"]
    )
    assert not missing, f"the module passes {', '.join(missing)}, which the CLI does not know"
    work = tmp_path / "work"
    stage_inputs(submit_module, inputs, work)
    rendered = submit_module.render("script", inputs, task)
    (work / ".command.sh").write_text(rendered.script)
    log_path = tmp_path / "submit.log"
    with log_path.open("w") as log:
        submit = subprocess.Popen(
            ["bash", "-euo", "pipefail", ".command.sh"],
            cwd=work,
            env=cli_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = ["virnucpro", "worker", "--redis", private_redis, "--db", results_db_url]
    worker += ["--burst", "--demo-models"]
    deadline, last_worker = time.monotonic() + 120, None
    while submit.poll() is None:  # burst workers until the submitter has its results
        last_worker = subprocess.run(
            worker, env=cli_env(), capture_output=True, text=True, timeout=120
        )
        if time.monotonic() > deadline:
            submit.kill()
            submit.wait()
            pytest.fail(
                f"virnucpro submit --wait did not finish; last worker exit "
                f"{last_worker.returncode}: {last_worker.stdout}{last_worker.stderr}"
            )
        time.sleep(0.2)
    assert submit.returncode == 0, f"{rendered.script}\n{log_path.read_text()}"
    outputs = {o.emit: o for o in submit_module.collect_outputs(rendered, work, cli_env())}
    check_results(check_outputs(submit_module, outputs, meta, expect_viral=True), True)


# --- the workflow's wiring (its channel logic needs Nextflow and is not run here) ----------------


def test_workflow_includes_and_config_name_the_modules():
    main = (NEXTFLOW / "main.nf").read_text()
    included = re.findall(r"include\s*\{\s*(\w+)\s*\}\s*from\s*'([^']+)'", main)
    assert {name for name, _ in included} == {"VIRNUCPRO_PREDICT", "VIRNUCPRO_SUBMIT"}
    for name, path in included:
        assert NextflowProcess(NEXTFLOW / f"{path}.nf").name == name
    config = (NEXTFLOW / "nextflow.config").read_text()
    selectors = set(re.findall(r"withName:\s*'([^']+)'", config))
    assert selectors == {"VIRNUCPRO_PREDICT", "VIRNUCPRO_SUBMIT"}
    labels = set(re.findall(r"withLabel:\s*(\w+)", config))
    used = {NextflowProcess(NEXTFLOW / f"{p}.nf").directive("label")[0] for _, p in included}
    assert used <= labels
    # the gpu profile asks for the accelerator; the modules only read it
    gpu = config[config.index("gpu {") :]
    assert re.search(r"withName:\s*'VIRNUCPRO_PREDICT'\s*\{\s*accelerator\s*=\s*1", gpu)
    for module_dir in (PREDICT, SUBMIT):  # no `accelerator` directive in a module
        assert not re.search(r"^\s*accelerator\b", (module_dir / "main.nf").read_text(), re.M)


def test_test_samplesheet_names_existing_files():
    sheet = NEXTFLOW / "assets" / "samplesheet_test.csv"
    rows = list(csv.DictReader(sheet.read_text().splitlines()))
    assert rows and len({row["sample"] for row in rows}) == len(rows)
    for row in rows:
        assert (sheet.parent / row["fasta"]).resolve().is_file()


# --- the renderer itself: Groovy semantics it relies on --------------------------------------


@pytest.mark.parametrize(
    "expression, variables, expected",
    [
        ("a ?: 'x'", {"a": None}, "x"),
        ("a ?: 'x'", {"a": ""}, "x"),
        ("a ?: 'x'", {"a": "--y"}, "--y"),
        ("a ? 'yes' : 'no'", {"a": []}, "no"),
        ("a ? 'yes' : 'no'", {"a": [1]}, "yes"),
        ("a ? 'yes' : 'no'", {"a": 0}, "no"),
        ("m.id", {"m": {"id": "s1"}}, "s1"),
        ("m.missing == null", {"m": {}}, True),
        ("m?.id", {"m": None}, None),
        ('"${m.id}_x"', {"m": {"id": "s1"}}, "s1_x"),
        ('"$m.id.txt"', {"m": {"id": {"txt": "deep"}}}, "deep"),  # Groovy: $a.b.c is a path
        ('"a\\$b \\\\ \\""', {}, 'a$b \\ "'),
        ('"${a}"', {"a": None}, "null"),
        ('"${a}"', {"a": [1, "b"]}, "[1, b]"),
        ("'single $x'", {}, "single $x"),
        ("!a && b || c", {"a": False, "b": True, "c": False}, True),
        ("a.contains('--v')", {"a": "x --v y"}, True),
        ("[k: 1].k + 2", {}, 3),
    ],
)
def test_renderer_follows_groovy(expression, variables, expected):
    assert evaluate(parse_expression(expression), Scope(variables)) == expected


@pytest.mark.parametrize("expression", ["a.each { it }", "a =~ /x/", "a[0]", '"$"'])
def test_renderer_refuses_what_it_does_not_interpret(expression):
    with pytest.raises(UnsupportedGroovy):
        evaluate(parse_expression(expression), Scope({"a": "x"}))
