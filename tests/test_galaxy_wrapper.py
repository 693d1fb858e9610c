"""Fast checks of the Galaxy wrapper (galaxy_tool/): no Galaxy needed, standard library only.

The wrapper is proven by a real Galaxy server in CI (.ci/galaxy/run_tool_tests.sh); these catch
the cheap mistakes first: files tools-iuc's CI refuses, a data table whose columns drift, a
test that names a missing file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import virnucpro_worker
from virnucpro_worker.pipeline.embeddings import EMBEDDINGS_FILE
from virnucpro_worker.pipeline.multiqc import CALLS_FILE, GENERAL_STATS_FILE
from virnucpro_worker.pipeline.outputs import (
    HIGHEST_SCORE_COLUMNS,
    HIGHEST_SCORE_FILE,
    PREDICTIONS_COLUMNS,
    PREDICTIONS_FILE,
    RESULT_FILES,
    RUN_FILE,
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
)

TOOL_DIR = Path(__file__).resolve().parents[1] / "galaxy_tool"
TEST_DATA = TOOL_DIR / "test-data"
MAX_TEST_FILE = 1024 * 1024  # tools-iuc's limit
# Every file `predict` writes but the intermediates and the MultiQC custom content (for
# pipelines that run MultiQC over many samples: Galaxy's MultiQC tool reads tools' own files).
CLI_OUTPUTS = {*RESULT_FILES, RUN_FILE, EMBEDDINGS_FILE} - {GENERAL_STATS_FILE, CALLS_FILE}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.fixture(scope="module")
def tool() -> ET.Element:
    return ET.parse(TOOL_DIR / "virnucpro.xml").getroot()


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    macros = ET.parse(TOOL_DIR / "macros.xml").getroot()
    return {token.get("name"): (token.text or "") for token in macros.iter("token")}


@pytest.fixture(scope="module")
def table_columns() -> list[str]:
    def columns(name: str) -> list[str]:
        table = ET.parse(TOOL_DIR / name).getroot().find("table[@name='virnucpro_models']")
        assert table is not None, f"{name} has no virnucpro_models table"
        return [column.strip() for column in table.findtext("columns", "").split(",")]

    sample, test = (
        columns("tool_data_table_conf.xml.sample"),
        columns("tool_data_table_conf.xml.test"),
    )
    assert sample == test
    return sample


def test_every_test_data_file_is_under_1_mb():
    files = [path for path in TEST_DATA.rglob("*") if path.is_file()]
    assert files
    too_big = [
        f"{p.relative_to(TOOL_DIR)}: {p.stat().st_size}"
        for p in files
        if p.stat().st_size >= MAX_TEST_FILE
    ]
    assert not too_big


def test_version_profile_and_requirement(tool, tokens):
    assert tool.get("version") == "@TOOL_VERSION@+galaxy@VERSION_SUFFIX@"
    assert tokens["@TOOL_VERSION@"] == virnucpro_worker.__version__
    assert tokens["@VERSION_SUFFIX@"].isdigit()
    profile = tokens.get(tool.get("profile"), tool.get("profile"))
    assert (24, 2) <= _version(profile) <= (26, 1)
    assert tool.find("command").get("detect_errors") == "exit_code"
    macros = ET.parse(TOOL_DIR / "macros.xml").getroot()
    requirements = macros.find("xml[@name='requirements']/requirements")
    package = requirements.find("requirement[@type='package']")
    assert (package.text, package.get("version")) == ("virnucpro-worker", "@TOOL_VERSION@")
    assert requirements.find("resource[@type='cuda_device_count_min']").text == "1"


def test_outputs_are_the_cli_files(tool):
    names = {data.get("from_work_dir", "").removeprefix("out/") for data in tool.iter("data")}
    assert names == CLI_OUTPUTS


# The tabular outputs' columns: the token prefix macros.xml names them under.
TABULAR = {
    PREDICTIONS_FILE: ("PREDICTIONS", PREDICTIONS_COLUMNS),
    HIGHEST_SCORE_FILE: ("HIGHEST_SCORE", HIGHEST_SCORE_COLUMNS),
    SUMMARY_FILE: ("SUMMARY", SUMMARY_COLUMNS),
}


def _expanded(element: ET.Element, tokens: dict[str, str]) -> ET.Element:
    """`element` with the tokens in its attributes replaced, as Galaxy does."""
    for node in element.iter():
        for key, value in node.attrib.items():
            for token, text in tokens.items():
                value = value.replace(token, text)
            node.set(key, value)
    return element


def test_the_column_tokens_are_the_declared_columns(tokens):
    for prefix, columns in TABULAR.values():
        expected = {
            f"@{prefix}_COLUMNS@": ",".join(columns),
            f"@{prefix}_HEADER@": "\t".join(columns),
            f"@{prefix}_WIDTH@": str(len(columns)),
        }
        assert {token: tokens.get(token) for token in expected} == expected


def test_the_tabular_outputs_and_their_tests_name_the_declared_columns(tokens):
    raw = (TOOL_DIR / "virnucpro.xml").read_text()
    tool = _expanded(ET.parse(TOOL_DIR / "virnucpro.xml").getroot(), tokens)
    for name, (_, columns) in TABULAR.items():
        # Written once, in macros.xml: the tool only uses the tokens.
        assert ",".join(columns) not in raw and "&#9;".join(columns) not in raw, name
        (data,) = tool.findall(f"outputs/data[@from_work_dir='out/{name}']")
        assert data.find("actions/action[@name='column_names']").get("default") == ",".join(columns)
        outputs = tool.findall(f"tests/test/output[@name='{data.get('name')}']")
        assert outputs, name
        for output in outputs:
            for metadata in output.findall("metadata[@name='column_names']"):
                assert metadata.get("value") == ",".join(columns), name
            for width in output.iter("has_n_columns"):
                assert width.get("n") == str(len(columns)), name
            for line in output.iter("has_line"):
                if line.get("line").startswith(columns[0] + "\t"):
                    assert line.get("line") == "\t".join(columns), name


def test_tests_name_existing_files_and_a_known_model_set(tool, table_columns):
    loc_values = {row[0] for row in _loc_rows(TEST_DATA / "virnucpro_models.loc")}
    tests = tool.findall("tests/test")
    assert len(tests) >= 4
    for test in tests:
        params = {param.get("name"): param.get("value") for param in test.iter("param")}
        assert (TEST_DATA / params["input"]).is_file(), params["input"]
        assert params["models"] in loc_values
    chunk_sizes = {test.find("param[@name='chunk_size']").get("value") for test in tests}
    assert chunk_sizes == {"300", "500"}
    assert any(test.get("expect_failure") == "true" for test in tests)


def _loc_rows(path: Path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    return [line.split("\t") for line in lines if line.strip() and not line.startswith("#")]


def test_test_loc_points_at_demo_models_in_test_data(table_columns):
    rows = _loc_rows(TEST_DATA / "virnucpro_models.loc")
    assert rows
    for row in rows:
        assert len(row) == len(table_columns), row
        fields = dict(zip(table_columns, row, strict=True))
        paths = {key: value for key, value in fields.items() if key not in ("value", "name")}
        for key, value in paths.items():
            assert value.startswith("${__HERE__}/"), (key, value)
            resolved = TEST_DATA / value.removeprefix("${__HERE__}/")
            assert resolved.exists(), (key, resolved)
        assert (
            TEST_DATA / fields["dnabert"].removeprefix("${__HERE__}/") / "config.json"
        ).is_file()


def test_sample_loc_examples_have_every_column(table_columns):
    sample = (TOOL_DIR / "tool-data" / "virnucpro_models.loc.sample").read_text().splitlines()
    examples = [line[1:].split("\t") for line in sample if re.match(r"#\w+\t", line)]
    assert examples
    assert all(len(example) == len(table_columns) for example in examples)
    assert not _loc_rows(TOOL_DIR / "tool-data" / "virnucpro_models.loc.sample")


def test_shed_yml_names_the_tool():
    text = (TOOL_DIR / ".shed.yml").read_text()
    assert re.search(r"^name: virnucpro$", text, re.MULTILINE)
    assert re.search(r"^owner: \S+", text, re.MULTILINE)
