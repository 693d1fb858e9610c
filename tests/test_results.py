"""The call rules, the result rows, and the result files: the original's two formats byte for
byte, plus our per-record summary, written together or not at all."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from virnucpro_worker.errors import UserError
from virnucpro_worker.pipeline.calls import chunk_is_virus, frame_label, record_call
from virnucpro_worker.pipeline.outputs import (
    DEMO_BANNER,
    DEMO_NOTICE_FILE,
    HIGHEST_SCORE_FILE,
    PREDICTIONS_FILE,
    RESULT_FILES,
    RUN_FILE,
    SUMMARY_FILE,
    SUMMARY_HEADER,
    VIRAL_FASTA_FILE,
    ResultWriter,
    format_score,
    highest_scores_from,
    read_prediction_results,
    write_highest_scores,
)
from virnucpro_worker.pipeline.results import BlockResult, block_result
from virnucpro_worker.sequences.prepare import PreparedBlock, RecordInfo
from virnucpro_worker.sequences.translation import KeptFrame

VANILLA = Path(__file__).parent / "data" / "vanilla_500"
# What a run writes, but for the optional viral FASTA.
WRITTEN_FILES = {*RESULT_FILES, RUN_FILE} - {VIRAL_FASTA_FILE}


def kept(frame_id: str) -> KeptFrame:
    chunk_id, name = frame_id[:-2], frame_id[-2:]
    record_id, number = chunk_id.rsplit("_chunk_", 1)
    return KeptFrame(record_id, int(number), name[0], int(name[1]), "", "", 0)


def result(records: list[RecordInfo], frame_ids: list[str], *scores, first=0) -> BlockResult:
    prepared = PreparedBlock(records, [""] * len(records), frames=[kept(f) for f in frame_ids])
    values = np.array(scores, dtype=np.float32).reshape(len(frame_ids), 2)
    return block_result(prepared, values, first, 500)


def write(out_dir: Path, *blocks: BlockResult, demo: bool = False) -> ResultWriter:
    with ResultWriter(out_dir, demo=demo) as writer:
        for block in blocks:
            writer.add(block)
        writer.commit({})
    return writer


def counts(writer: ResultWriter) -> tuple[int, int, int, int, int]:
    return (writer.records, writer.chunks, writer.frames, writer.scored_chunks, writer.viral_chunks)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# The rules


def test_frame_label_ties_go_to_others_and_chunk_calls_ties_to_virus() -> None:
    assert frame_label(0.5, 0.5) == "others" and frame_label(0.4, 0.6) == "virus"
    assert chunk_is_virus(0.5, 0.5) and not chunk_is_virus(0.6, 0.4)


@pytest.mark.parametrize(
    ("scored", "viral", "call"),
    [(0, 0, "unscored"), (1, 1, "virus"), (2, 1, "virus"), (3, 1, "others"), (4, 0, "others")],
)
def test_record_call_is_the_share_of_viral_chunks(scored: int, viral: int, call: str) -> None:
    assert record_call(scored, viral) == call


def test_rows_have_structured_keys_and_the_calls() -> None:
    block = result(
        [RecordInfo("r", 1200, 3), RecordInfo("s", 100, 1)],
        ["r_chunk_1F2", "r_chunk_1R1", "r_chunk_3R3"],
        (0.7, 0.3),
        (0.2, 0.8),
        (0.9, 0.1),
        first=5,
    )
    first = block.frames[0]
    assert (first.record, first.record_id, first.chunk, first.strand, first.frame) == (
        5,
        "r",
        1,
        "F",
        2,
    )
    assert first.id == "r_chunk_1F2" and first.label == "others"
    assert [(c.chunk, c.kept_frames, c.is_virus) for c in block.chunks] == [
        (1, 2, True),
        (3, 1, False),
    ]
    assert block.chunks[0].max_others_score == pytest.approx(0.7)
    assert block.chunks[0].max_virus_score == pytest.approx(0.8)
    r, s = block.records
    assert (r.index, r.kept_frames, r.scored_chunks, r.viral_chunks, r.call) == (
        5,
        3,
        2,
        1,
        "virus",
    )
    assert r.max_virus_score == pytest.approx(0.8) and r.viral_chunk_fraction == 0.5
    assert (s.index, s.scored_chunks, s.max_virus_score, s.call) == (6, 0, None, "unscored")
    assert isinstance(first.virus_score, float) and first.virus_score == float(np.float32(0.3))


# The files


def test_format_score_reproduces_the_original_texts() -> None:
    rows = lines(VANILLA / "prediction_results.txt")[1:]
    texts = [text for row in rows for text in row.split("\t")[2:]]
    assert len(texts) == 8
    for text in texts:
        assert format_score(np.float32(text)) == text
        assert format_score(float(text)) == text


def test_original_results_parse_and_reproduce_the_highest_score_file() -> None:
    rows = read_prediction_results(VANILLA / "prediction_results.txt")
    assert rows[0] == ("synthetic_seq_1_chunk_1R1", "virus", 0.12100612, 0.8789939)
    assert [row[1] for row in rows] == ["virus", "virus", "others", "virus"]
    table = io.StringIO()
    write_highest_scores(table, highest_scores_from(rows))
    assert table.getvalue() == (VANILLA / "prediction_results_highestscore.csv").read_text()


def test_writer_reproduces_the_original_files(tmp_path: Path) -> None:
    rows = read_prediction_results(VANILLA / "prediction_results.txt")
    records = [RecordInfo("synthetic_seq_1", 174, 1), RecordInfo("synthetic_seq_2", 171, 1)]
    writer = write(tmp_path, result(records, [row[0] for row in rows], *(row[2:] for row in rows)))
    for name in (PREDICTIONS_FILE, HIGHEST_SCORE_FILE):
        assert (tmp_path / name).read_bytes() == (VANILLA / name).read_bytes()
    assert counts(writer) == (2, 2, 4, 2, 2)  # records, chunks, frames, scored, viral


def test_rows_keep_the_given_order_and_the_label_rule(tmp_path: Path) -> None:
    frames = ["s_chunk_1R2", "s_chunk_1F1", "s_chunk_2F3"]
    write(tmp_path, result([RecordInfo("s", 900, 2)], frames, (0.25, 0.75), (0.5, 0.5), (0.9, 0.1)))
    assert lines(tmp_path / PREDICTIONS_FILE) == [
        "Sequence_ID\tPrediction\tscore1\tscore2",
        "s_chunk_1R2\tvirus\t0.25\t0.75",
        "s_chunk_1F1\tothers\t0.5\t0.5",  # a tie is index 0: others
        "s_chunk_2F3\tothers\t0.9\t0.1",
    ]


def test_chunks_group_by_modified_id_and_sort_as_strings(tmp_path: Path) -> None:
    frames = ["r_chunk_2F1", "r_chunk_2R1", "r_chunk_3F2", "r_chunk_10R3"]
    values = (0.9, 0.1), (0.3, 0.7), (0.5, 0.5), (0.2, 0.8)
    write(tmp_path, result([RecordInfo("r", 5000, 10)], frames, *values))
    assert lines(tmp_path / HIGHEST_SCORE_FILE) == [
        "Modified_ID\tIs_Virus",
        "r_chunk_10\tTrue",
        "r_chunk_2\tFalse",  # max score2 0.7 (R1) < max score1 0.9 (F1): maxima over the group
        "r_chunk_3\tTrue",  # a tie counts as virus here, unlike the per-frame label
    ]


def test_the_sort_spans_blocks(tmp_path: Path) -> None:
    write(
        tmp_path,
        result([RecordInfo("b", 100, 1)], ["b_chunk_1F1"], (0.1, 0.9)),
        result([RecordInfo("a", 100, 1)], ["a_chunk_1R1"], (0.8, 0.2), first=1),
    )
    assert [line.split("\t")[0] for line in lines(tmp_path / PREDICTIONS_FILE)[1:]] == [
        "b_chunk_1F1",
        "a_chunk_1R1",
    ]
    assert lines(tmp_path / HIGHEST_SCORE_FILE)[1:] == ["a_chunk_1\tFalse", "b_chunk_1\tTrue"]


@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_no_frames_give_header_only_files(tmp_path: Path, blocks: int) -> None:
    writer = write(
        tmp_path, *(result([RecordInfo(f"r{i}", 500, 1)], [], first=i) for i in range(blocks))
    )
    assert lines(tmp_path / PREDICTIONS_FILE) == ["Sequence_ID\tPrediction\tscore1\tscore2"]
    assert lines(tmp_path / HIGHEST_SCORE_FILE) == ["Modified_ID\tIs_Virus"]
    assert len(lines(tmp_path / SUMMARY_FILE)) == 1 + blocks
    assert counts(writer) == (blocks, blocks, 0, 0, 0)


def test_summary_rows(tmp_path: Path) -> None:
    records = [
        RecordInfo("viral", 1200, 3),
        RecordInfo("empty", 500, 1),
        RecordInfo("host", 1000, 2),
        RecordInfo("half", 1000, 2),
    ]
    frames = [
        "viral_chunk_1F1",
        "viral_chunk_1R2",
        "viral_chunk_3F2",
        "host_chunk_2R3",
        "half_chunk_1F1",
        "half_chunk_2F1",
    ]
    values = (0.3, 0.7), (0.01, 0.99), (0.6, 0.4), (0.95, 0.05), (0.2, 0.8), (0.7, 0.3)
    writer = write(tmp_path, result(records, frames, *values))
    assert lines(tmp_path / SUMMARY_FILE) == [
        SUMMARY_HEADER,
        "viral\t1200\t3\t3\t2\t0.99\t0.5000\tvirus\t0",
        "empty\t500\t1\t0\t0\t\t\tunscored\t0",
        "host\t1000\t2\t1\t1\t0.05\t0.0000\tothers\t0",
        "half\t1000\t2\t2\t2\t0.8\t0.5000\tvirus\t0",
    ]
    assert SUMMARY_HEADER.split("\t") == [
        "record_id",
        "length",
        "chunks",
        "kept_frames",
        "scored_chunks",
        "max_virus_score",
        "viral_chunk_fraction",
        "call",
        "viral_regions",
    ]
    assert counts(writer) == (4, 8, 6, 5, 2)


def one_block(out_dir: Path, demo: bool) -> None:
    write(out_dir, result([RecordInfo("s", 500, 1)], ["s_chunk_1F1"], (0.4, 0.6)), demo=demo)


def test_demo_results_say_so_without_changing_the_original_formats(tmp_path: Path) -> None:
    one_block(tmp_path / "real", demo=False)
    one_block(tmp_path / "demo", demo=True)
    for name in (PREDICTIONS_FILE, HIGHEST_SCORE_FILE):
        assert (tmp_path / "demo" / name).read_bytes() == (tmp_path / "real" / name).read_bytes()
    summary = lines(tmp_path / "demo" / SUMMARY_FILE)
    assert summary[0] == DEMO_BANNER
    assert summary[1:] == lines(tmp_path / "real" / SUMMARY_FILE)
    assert "meaningless" in (tmp_path / "demo" / DEMO_NOTICE_FILE).read_text()
    assert not (tmp_path / "real" / DEMO_NOTICE_FILE).exists()


def test_real_results_remove_an_earlier_demo_notice(tmp_path: Path) -> None:
    one_block(tmp_path, demo=True)
    one_block(tmp_path, demo=False)
    assert not (tmp_path / DEMO_NOTICE_FILE).exists()
    assert lines(tmp_path / SUMMARY_FILE)[0] == SUMMARY_HEADER


def test_run_json_lists_the_outputs(tmp_path: Path) -> None:
    one_block(tmp_path, demo=True)
    run = json.loads((tmp_path / RUN_FILE).read_text())
    assert run["outputs"] == sorted(WRITTEN_FILES | {DEMO_NOTICE_FILE})


@pytest.mark.parametrize("demo", [False, True])
def test_a_failure_inside_the_writer_leaves_no_file(tmp_path: Path, demo: bool) -> None:
    with pytest.raises(RuntimeError, match="embedding failed"), ResultWriter(tmp_path, demo=demo):
        raise RuntimeError("embedding failed")
    assert list(tmp_path.iterdir()) == []

    with (
        pytest.raises(RuntimeError, match="scoring failed"),
        ResultWriter(tmp_path, demo=demo) as writer,
    ):
        writer.add(result([RecordInfo("s", 500, 1)], ["s_chunk_1F1"], (0.4, 0.6)))
        assert list(tmp_path.iterdir())  # partial files exist, hidden, while writing
        raise RuntimeError("scoring failed")
    assert list(tmp_path.iterdir()) == []


def test_files_appear_only_when_the_writer_commits(tmp_path: Path) -> None:
    with ResultWriter(tmp_path) as writer:
        writer.add(result([RecordInfo("s", 500, 1)], ["s_chunk_1F1"], (0.4, 0.6)))
        assert not WRITTEN_FILES & {path.name for path in tmp_path.iterdir()}
        writer.commit({})
    assert {path.name for path in tmp_path.iterdir()} == WRITTEN_FILES


def test_inconsistent_blocks_are_rejected(tmp_path: Path) -> None:
    record = [RecordInfo("s", 500, 1)]
    with pytest.raises(ValueError, match="scores"):
        block_result(
            PreparedBlock(record, [""], frames=[kept("s_chunk_1F1")]), np.zeros((2, 2)), 0, 500
        )
    with pytest.raises(ValueError, match="no record"):
        result(record, ["t_chunk_1F1"], (0.4, 0.6))
    with pytest.raises(ValueError, match="two blocks"), ResultWriter(tmp_path) as writer:
        writer.add(result(record, ["s_chunk_1F1"], (0.4, 0.6)))
        writer.add(result(record, ["s_chunk_1R1"], (0.4, 0.6)))
    assert list(tmp_path.iterdir()) == []


def test_malformed_prediction_results_are_user_errors(tmp_path: Path) -> None:
    path = tmp_path / PREDICTIONS_FILE
    path.write_text("id\tscore\n")
    with pytest.raises(UserError, match="header"):
        read_prediction_results(path)
    path.write_text("Sequence_ID\tPrediction\tscore1\tscore2\nx_chunk_1F1\tvirus\t0.5\n")
    with pytest.raises(UserError, match=":2:"):
        read_prediction_results(path)


probabilities = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) | st.floats(0, 1, width=32)


@given(
    st.lists(
        st.tuples(st.integers(1, 12), st.sampled_from(["F1", "F2", "F3", "R1", "R2", "R3"])),
        unique=True,
        max_size=30,
    ),
    st.data(),
)
def test_written_highest_scores_match_the_rule_on_the_written_text(
    tmp_path_factory: pytest.TempPathFactory, frame_keys: list, data: st.DataObject
) -> None:
    """The writer decides on float32 values; the original re-read the text as float64."""
    out_dir = tmp_path_factory.mktemp("results")
    frame_keys.sort()
    frames = [f"rec_chunk_{chunk}{name}" for chunk, name in frame_keys]
    score1 = data.draw(st.lists(probabilities, min_size=len(frames), max_size=len(frames)))
    write(out_dir, result([RecordInfo("rec", 6000, 12)], frames, *((p, 1 - p) for p in score1)))
    table = io.StringIO()
    write_highest_scores(
        table, highest_scores_from(read_prediction_results(out_dir / PREDICTIONS_FILE))
    )
    assert (out_dir / HIGHEST_SCORE_FILE).read_text() == table.getvalue()
