"""Reading a user's data file as `occam train` and the main job read it.

CSV (optionally compressed: .gz, .bz2, .zip, .xz, .zst) or Parquet. The CSV separator is the
comma, semicolon, tab or pipe that the header line holds most of (outside quotes); a semicolon
file may write decimal commas, as spreadsheets in many locales export it; the encoding is UTF-8
(with or without a byte order mark), else Windows-1252; a file whose rows end with "\\n" and
that holds a bare carriage return (a text field of tweets or comments) is read with rows ended by
"\\n" alone. A binary file or a CSV that cannot be parsed raises `DataFileError`, naming the file
and the fix.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.io.common import get_handle


class DataFileError(ValueError):
    """A data file that cannot be read as a table; the message names it and the fix."""


def read_table(path: Path) -> pd.DataFrame:
    """The table in `path` (see the module docstring)."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    with get_handle(path, "rb", compression="infer", is_text=False) as handle:
        raw = handle.handle.read()
    if b"\x00" in raw[:65536]:
        raise DataFileError(
            f"data file {path} is not text (it holds NUL bytes): Occam reads CSV (optionally "
            "compressed: .gz, .bz2, .zip, .xz, .zst) or Parquet: save a spreadsheet as CSV"
        )
    options: dict[str, Any] = {
        "lineterminator": _row_end(raw),
        "sep": _separator(raw),
        "encoding": _encoding(raw),
    }
    try:  # parse the bytes already read (and decompressed) rather than reading them again
        frame = pd.read_csv(io.BytesIO(raw), low_memory=False, **options)
        if options["sep"] == ";":  # a spreadsheet's export may write decimal commas
            commas = pd.read_csv(io.BytesIO(raw), low_memory=False, decimal=",", **options)
            if _numeric_columns(commas) > _numeric_columns(frame):
                frame = commas
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataFileError(
            f"data file {path} cannot be read as CSV: {exc}; Occam reads CSV (optionally "
            "compressed: .gz, .bz2, .zip, .xz, .zst) or Parquet: save a spreadsheet as CSV"
        ) from None
    return frame


#: The separators a CSV's header line is checked for, the first one the default.
SEPARATORS = (",", ";", "\t", "|")


def _separator(raw: bytes) -> str:
    """The separator of the header line: the one of `SEPARATORS` it holds most of (a comma
    when tied or none), outside quotes; so a file exported with semicolons (a spreadsheet in
    a locale whose decimal mark is a comma), tabs or pipes reads as its columns."""
    header = raw.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    unquoted = "".join(header.split('"')[::2])
    counts = {sep: unquoted.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: (counts[sep], sep == ","))
    return best if counts[best] else ","


def _encoding(raw: bytes) -> str:
    """UTF-8 when the file decodes as UTF-8, else Windows-1252 (a spreadsheet's export in
    Western Europe: "Köln" as one byte), else Latin-1, which decodes any byte."""
    for encoding in ("utf-8", "cp1252"):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"


def _numeric_columns(frame: pd.DataFrame) -> int:
    return sum(pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns)


def _row_end(raw: bytes) -> str | None:
    """The row end to read the file with: "\\n" when its rows end with "\\n" and it holds a
    bare carriage return (in a text field: tweets, comments), else None (pandas' default, which
    also reads "\\r\\n" and "\\r" row ends).

    pandas' C reader ends a row at any "\\r", quoted or not: on such a file it silently splits
    rows (150 rows read from 100 written by pandas' own `to_csv`) or stops with "Buffer
    overflow caught"."""
    if b"\r" not in raw or b"\r\n" in raw or b"\n" not in raw:
        return None
    return "\n"
