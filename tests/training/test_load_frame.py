"""`training.data.load_frame` on CSV files that pandas' default reader misreads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training.data import DataError, load_frame

#: Text as found in a CSV of tweets: bare carriage returns in an unquoted field.
TWEET = "http://bit.ly/a \r\rhttp://bit.ly/a \r\r\r  My interview"


def tweets() -> pd.DataFrame:
    text = [TWEET, "plain", "one\rtwo", "last"] * 25
    likes = [3, 10, 0, 7] * 25
    device = ["android", "iphone", "web", "android"] * 25
    return pd.DataFrame({"text": text, "likes": likes, "device": device})


def test_a_text_column_with_bare_carriage_returns_is_read_as_written(tmp_path: Path) -> None:
    """pandas' C reader ends a row at a bare carriage return: on pandas' own `to_csv` output of
    such text it stops ("Buffer overflow caught", seen on a CSV of tweets) or splits rows."""
    frame = tweets()
    path = tmp_path / "tweets.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(pd.errors.ParserError):
        pd.read_csv(path, low_memory=False)  # the default reader: the failure this mends
    pd.testing.assert_frame_equal(load_frame(path), frame)
    split = frame.replace({TWEET: "x"})
    split.to_csv(path, index=False)
    assert len(pd.read_csv(path, low_memory=False)) == 125  # silently split rows
    pd.testing.assert_frame_equal(load_frame(path), split)


def test_crlf_and_compressed_files_read_as_before(tmp_path: Path) -> None:
    frame = tweets().replace({TWEET: "x", "one\rtwo": "y"})
    crlf = tmp_path / "crlf.csv"
    frame.to_csv(crlf, index=False, lineterminator="\r\n")
    pd.testing.assert_frame_equal(load_frame(crlf), frame)
    packed = tmp_path / "tweets.csv.gz"
    tweets().to_csv(packed, index=False)
    pd.testing.assert_frame_equal(load_frame(packed), tweets())


def test_a_file_that_is_no_csv_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(b'a,b\n1,2\n3,"4\n')
    with pytest.raises(DataError, match=r"broken\.csv cannot be read as CSV"):
        load_frame(path)


def spreadsheet() -> pd.DataFrame:
    return pd.DataFrame(
        {"price": [12.5, 3.25, 7.0, 1.75] * 10, "rooms": [1, 2, 3, 1] * 10,
         "city": ["Lyon", "Köln", "Graz", "Gent"] * 10, "sold": ["yes", "no"] * 20}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("sep", "decimal"), [(";", ","), (";", "."), ("\t", "."), ("|", "."), (",", ".")]
)
def test_a_csv_with_another_separator_reads_as_its_columns(
    tmp_path: Path, sep: str, decimal: str
) -> None:
    """A spreadsheet export in a locale with decimal commas writes semicolons (and "12,5");
    tab- and pipe-separated files exist too. Read as one column each, such a file made
    `occam init` answer that the target is not a column."""
    frame = spreadsheet()
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False, sep=sep, decimal=decimal)
    pd.testing.assert_frame_equal(load_frame(path), frame)


def test_a_separator_inside_a_quoted_column_name_is_not_the_separator(tmp_path: Path) -> None:
    frame = spreadsheet().rename(columns={"price": "price; in EUR"})
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False)
    pd.testing.assert_frame_equal(load_frame(path), frame)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
def test_a_spreadsheet_export_reads_in_its_encoding(tmp_path: Path, encoding: str) -> None:
    """Windows-1252 (a Western European export: "Köln" as one byte) and UTF-8 with a byte
    order mark read as UTF-8 does; before, Windows-1252 was refused as not UTF-8."""
    frame = spreadsheet()
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False, sep=";", decimal=",", encoding=encoding)
    pd.testing.assert_frame_equal(load_frame(path), frame)


def test_a_binary_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "sales.xlsx"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00 a workbook")
    with pytest.raises(DataError, match=r"is not text .* save a spreadsheet as CSV"):
        load_frame(path)
