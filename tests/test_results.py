"""The result files: the original's two formats, byte for byte, plus our per-record summary."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from virnucpro_worker.errors import UserError
from virnucpro_worker.pipeline.results import (
    DEMO_BANNER,
    DEMO_NOTICE_FILE,
    HIGHEST_SCORE_FILE,
    PREDICTIONS_FILE,
    SUMMARY_FILE,
    SUMMARY_HEADER,
    ResultWriter,
    format_score,
    highest_scores_from,
    read_prediction_results,
    write_highest_scores,
)
from virnucpro_worker.sequences.prepare import RecordInfo
from virnucpro_worker.sequences.translation import KeptFrame

VANILLA = Path(__file__).parent / "data" / "vanilla_500"
RESULT_FILES = {PREDICTIONS_FILE, HIGHEST_SCORE_FILE, SUMMARY_FILE}


def frame(frame_id: str) -> KeptFrame:
    record_id = frame_id.rsplit("_chunk_", 1)[0]
    return KeptFrame(frame_id, record_id, nucleotide="", protein="")


def scores(*rows: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 2)


def counts(writer: ResultWriter) -> tuple[int, int, int, int, int]:
    return (
        writer.records,
        writer.chunks,
        writer.frames,
        writer.scored_chunks,
        writer.viral_chunks,
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


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
    with ResultWriter(tmp_path) as writer:
        writer.add(records, [frame(row[0]) for row in rows], scores(*(row[2:] for row in rows)))
    for name in (PREDICTIONS_FILE, HIGHEST_SCORE_FILE):
        assert (tmp_path / name).read_bytes() == (VANILLA / name).read_bytes()
    assert counts(writer) == (2, 2, 4, 2, 2)  # records, chunks, frames, scored, viral


def test_rows_keep_the_given_order_and_the_label_rule(tmp_path: Path) -> None:
    frames = [frame("s_chunk_1R2"), frame("s_chunk_1F1"), frame("s_chunk_2F3")]
    with ResultWriter(tmp_path) as writer:
        writer.add([RecordInfo("s", 900, 2)], frames, scores((0.25, 0.75), (0.5, 0.5), (0.9, 0.1)))
    assert lines(tmp_path / PREDICTIONS_FILE) == [
        "Sequence_ID\tPrediction\tscore1\tscore2",
        "s_chunk_1R2\tvirus\t0.25\t0.75",
        "s_chunk_1F1\tothers\t0.5\t0.5",  # a tie is index 0: others
        "s_chunk_2F3\tothers\t0.9\t0.1",
    ]


def test_chunks_group_by_modified_id_and_sort_as_strings(tmp_path: Path) -> None:
    frames = [
        frame("r_chunk_2F1"),
        frame("r_chunk_2R1"),
        frame("r_chunk_3F2"),
        frame("r_chunk_10R3"),
    ]
    values = scores((0.9, 0.1), (0.3, 0.7), (0.5, 0.5), (0.2, 0.8))
    with ResultWriter(tmp_path) as writer:
        writer.add([RecordInfo("r", 5000, 10)], frames, values)
    assert lines(tmp_path / HIGHEST_SCORE_FILE) == [
        "Modified_ID\tIs_Virus",
        "r_chunk_10\tTrue",
        "r_chunk_2\tFalse",  # max score2 0.7 (R1) < max score1 0.9 (F1): maxima over the group
        "r_chunk_3\tTrue",  # a tie counts as virus here, unlike the per-frame label
    ]


def test_the_sort_spans_blocks(tmp_path: Path) -> None:
    with ResultWriter(tmp_path) as writer:
        writer.add([RecordInfo("b", 100, 1)], [frame("b_chunk_1F1")], scores((0.1, 0.9)))
        writer.add([RecordInfo("a", 100, 1)], [frame("a_chunk_1R1")], scores((0.8, 0.2)))
    assert [line.split("\t")[0] for line in lines(tmp_path / PREDICTIONS_FILE)[1:]] == [
        "b_chunk_1F1",
        "a_chunk_1R1",
    ]
    assert lines(tmp_path / HIGHEST_SCORE_FILE)[1:] == ["a_chunk_1\tFalse", "b_chunk_1\tTrue"]


@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_no_frames_give_header_only_files(tmp_path: Path, blocks: int) -> None:
    with ResultWriter(tmp_path) as writer:
        for index in range(blocks):
            writer.add([RecordInfo(f"r{index}", 500, 1)], [], torch.empty(0, 2))
    assert lines(tmp_path / PREDICTIONS_FILE) == ["Sequence_ID\tPrediction\tscore1\tscore2"]
    assert lines(tmp_path / HIGHEST_SCORE_FILE) == ["Modified_ID\tIs_Virus"]
    assert len(lines(tmp_path / SUMMARY_FILE)) == 1 + blocks
    assert counts(writer) == (blocks, blocks, 0, 0, 0)


def test_summary_has_a_row_per_record_in_input_order(tmp_path: Path) -> None:
    records = [
        RecordInfo("viral", 1200, 3),
        RecordInfo("empty", 500, 1),
        RecordInfo("host", 1000, 2),
        RecordInfo("half", 1000, 2),
    ]
    frames = [
        frame("viral_chunk_1F1"),
        frame("viral_chunk_1R2"),
        frame("viral_chunk_3F2"),
        frame("host_chunk_2R3"),
        frame("half_chunk_1F1"),
        frame("half_chunk_2F1"),
    ]
    values = scores((0.3, 0.7), (0.01, 0.99), (0.6, 0.4), (0.95, 0.05), (0.2, 0.8), (0.7, 0.3))
    with ResultWriter(tmp_path) as writer:
        writer.add(records, frames, values)
    assert lines(tmp_path / SUMMARY_FILE) == [
        SUMMARY_HEADER,
        "viral\t1200\t3\t3\t2\t0.99\t0.5000\tvirus",
        "empty\t500\t1\t0\t0\t\t\tunscored",
        "host\t1000\t2\t1\t1\t0.05\t0.0000\tothers",
        "half\t1000\t2\t2\t2\t0.8\t0.5000\tvirus",
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
    ]
    assert counts(writer) == (4, 8, 6, 5, 2)


def write_one_block(out_dir: Path, demo: bool) -> None:
    with ResultWriter(out_dir, demo=demo) as writer:
        writer.add([RecordInfo("s", 500, 1)], [frame("s_chunk_1F1")], scores((0.4, 0.6)))


def test_demo_results_say_so_without_changing_the_original_formats(tmp_path: Path) -> None:
    write_one_block(tmp_path / "real", demo=False)
    write_one_block(tmp_path / "demo", demo=True)
    for name in (PREDICTIONS_FILE, HIGHEST_SCORE_FILE):
        assert (tmp_path / "demo" / name).read_bytes() == (tmp_path / "real" / name).read_bytes()
    summary = lines(tmp_path / "demo" / SUMMARY_FILE)
    assert summary[0] == DEMO_BANNER
    assert summary[1:] == lines(tmp_path / "real" / SUMMARY_FILE)
    assert "meaningless" in (tmp_path / "demo" / DEMO_NOTICE_FILE).read_text()
    assert not (tmp_path / "real" / DEMO_NOTICE_FILE).exists()


def test_real_results_remove_an_earlier_demo_notice(tmp_path: Path) -> None:
    write_one_block(tmp_path, demo=True)
    write_one_block(tmp_path, demo=False)
    assert not (tmp_path / DEMO_NOTICE_FILE).exists()
    assert lines(tmp_path / SUMMARY_FILE)[0] == SUMMARY_HEADER


@pytest.mark.parametrize("demo", [False, True])
def test_a_failure_inside_the_writer_leaves_no_file(tmp_path: Path, demo: bool) -> None:
    with pytest.raises(RuntimeError, match="embedding failed"), ResultWriter(tmp_path, demo):
        raise RuntimeError("embedding failed")
    assert list(tmp_path.iterdir()) == []

    with (
        pytest.raises(RuntimeError, match="scoring failed"),
        ResultWriter(tmp_path, demo) as writer,
    ):
        writer.add([RecordInfo("s", 500, 1)], [frame("s_chunk_1F1")], scores((0.4, 0.6)))
        assert list(tmp_path.iterdir())  # partial files exist, hidden, while writing
        raise RuntimeError("scoring failed")
    assert list(tmp_path.iterdir()) == []


def test_files_appear_only_when_the_writer_closes(tmp_path: Path) -> None:
    with ResultWriter(tmp_path) as writer:
        writer.add([RecordInfo("s", 500, 1)], [frame("s_chunk_1F1")], scores((0.4, 0.6)))
        assert not RESULT_FILES & {path.name for path in tmp_path.iterdir()}
    assert {path.name for path in tmp_path.iterdir()} == RESULT_FILES


def test_inconsistent_blocks_are_rejected(tmp_path: Path) -> None:
    record = [RecordInfo("s", 500, 1)]
    with pytest.raises(ValueError, match="scores"), ResultWriter(tmp_path) as writer:
        writer.add(record, [frame("s_chunk_1F1")], scores((0.4, 0.6), (0.5, 0.5)))
    with pytest.raises(ValueError, match="no record"), ResultWriter(tmp_path) as writer:
        writer.add(record, [frame("t_chunk_1F1")], scores((0.4, 0.6)))
    with pytest.raises(ValueError, match="two blocks"), ResultWriter(tmp_path) as writer:
        writer.add(record, [frame("s_chunk_1F1")], scores((0.4, 0.6)))
        writer.add([], [frame("s_chunk_1R1")], scores((0.4, 0.6)))
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
    frames = [frame(f"rec_chunk_{chunk}{name}") for chunk, name in frame_keys]
    score1 = data.draw(st.lists(probabilities, min_size=len(frames), max_size=len(frames)))
    values = scores(*((p, 1 - p) for p in score1))
    with ResultWriter(out_dir) as writer:
        writer.add([RecordInfo("rec", 6000, 12)], frames, values)
    table = io.StringIO()
    write_highest_scores(
        table, highest_scores_from(read_prediction_results(out_dir / PREDICTIONS_FILE))
    )
    assert (out_dir / HIGHEST_SCORE_FILE).read_text() == table.getvalue()
