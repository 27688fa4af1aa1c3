"""Bulk classification of CSV and XLSX files (``triage batch``).

Reading:

* CSV in UTF-8, UTF-8 with BOM, GB18030/GBK (detected), or UTF-16 with a BOM. Lines are
  decoded one by one, so a file whose lines mix UTF-8 and GB18030 (two exports pasted
  together) is read correctly; a line that is valid in neither gets a per-row
  ``encoding`` error instead of stopping the job.
* XLSX, every sheet or one (``sheet``), in read-only mode. Title rows above the header are
  skipped, merged header cells are filled (a two-row header gives ``组/列`` names) and merged
  data cells are filled down.
* Columns are found case-insensitively among common names (``TEXT_COLUMNS``, ...), or named.

Classifying: rows stream through in chunks (bounded memory whatever the file size), across
``jobs`` worker processes that each load the model once. Output (CSV, or XLSX written from a
CSV checkpoint at the end) keeps every input row and column in order and appends
``PRED_COLUMNS``; a row that cannot be classified gets ``pred_status=error`` and a reason in
``pred_error`` (``reason: detail``). ``resume`` continues an interrupted run from the rows
already in the output.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import sys
import time
import unicodedata
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from triage.errors import DataFileError, InputError, ModelError, TextTooLongError, TriageError

__all__ = [
    "DATE_COLUMNS",
    "PRED_COLUMNS",
    "TEXT_COLUMNS",
    "TITLE_COLUMNS",
    "BatchOptions",
    "BatchSummary",
    "SourceRow",
    "classify_rows",
    "find_column",
    "format_summary",
    "open_source",
    "run_batch",
    "write_report",
]

PRED_COLUMNS = (
    "pred_label",
    "pred_label_name",
    "pred_confidence",
    "pred_top3",
    "pred_department",
    "pred_route",
    "pred_disposition",
    "pred_flags",
    "pred_priority",
    "pred_needs_review",
    "pred_status",
    "pred_error",
)
#: Column names tried, in order, when no column is named on the command line.
TEXT_COLUMNS = ("text", "content", "信访内容", "留言详情", "内容", "正文", "留言内容", "诉求内容")
TITLE_COLUMNS = ("title", "subject", "标题", "留言主题", "主题", "留言标题")
DATE_COLUMNS = (
    "received_at", "date", "time", "留言时间", "时间", "日期", "信访日期", "来信日期", "登记日期",
)  # fmt: skip

#: Data rows per XLSX sheet (Excel's 1,048,576 rows less the header); a module attribute so
#: tests can lower it.
XLSX_MAX_DATA_ROWS = 1_048_575
#: Excel refuses to show a cell longer than this; longer values are cut in XLSX output only.
XLSX_MAX_CELL_CHARS = 32_767
#: How many rows at the top of a sheet are searched for the header row.
HEADER_SCAN_ROWS = 30
#: Bytes read from the start of a CSV to decide its encoding.
ENCODING_SAMPLE_BYTES = 512 * 1024

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MONTH = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})")
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})\d{2}")
_MERGE_REF = re.compile(rb'<(?:\w+:)?mergeCell\s+ref="([A-Z]+)(\d+):([A-Z]+)(\d+)"')
_ILLEGAL_XLSX_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


# ============================================================================================
# Reading
# ============================================================================================


@dataclass
class SourceRow:
    """One data row: ``values`` aligned with the source's output columns, plus what is classified.

    ``issue`` is a reading problem (``reason: detail``) that makes the row an error row.
    """

    values: list[Any]
    text: str
    title: str
    date: Any = None
    issue: str | None = None


class Source:
    """A readable table: ``columns`` (output names, in order) and ``rows()`` streaming them."""

    path: Path
    columns: list[str]
    text_column: str
    title_column: str | None
    date_column: str | None
    estimated_rows: int | None
    notes: list[str]

    def rows(self) -> Iterator[SourceRow]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the file handle(s)."""


def _key(name: Any) -> str:
    """A column name as compared: NFKC, case-folded, without spaces, BOM or a final colon."""
    text = unicodedata.normalize("NFKC", str(name or "")).replace("\ufeff", "")
    return re.sub(r"\s+", "", text).casefold().rstrip(":")


def find_column(
    columns: Sequence[str], wanted: str | None, candidates: Sequence[str]
) -> int | None:
    """Index of the column named ``wanted`` (or of the first known candidate), else None.

    A two-level header name ``组/列`` also matches on its last part.
    """
    keys = [_key(c) for c in columns]
    lasts = [k.rsplit("/", 1)[-1] for k in keys]
    for name in [wanted] if wanted else candidates:
        k = _key(name)
        for options in (keys, lasts):
            if k in options:
                return options.index(k)
    return None


def _missing_column(what: str, wanted: str | None, candidates: Sequence[str], where: str,
                    columns: Sequence[str], flag: str) -> DataFileError:  # fmt: skip
    shown = ", ".join(repr(c) for c in columns[:30]) or "none"
    if wanted:
        return DataFileError(f"{where}: no column {wanted!r} ({what}); columns are {shown}")
    return DataFileError(
        f"{where}: no {what} column (looked for {'/'.join(candidates)}); columns are {shown};"
        f" name it with {flag}"
    )


def _dedupe(names: list[str]) -> list[str]:
    """Make names unique the way pandas does (``内容``, ``内容.1``), so columns stay addressable."""
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        new = name if not seen[name] else f"{name}.{seen[name]}"
        seen[name] += 1
        out.append(new)
    return out


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- CSV ------------------------------------------------------------------------------------


def _detect_encoding(path: Path) -> tuple[str, int]:
    """(encoding, bytes of BOM to skip) of a CSV, from its first ``ENCODING_SAMPLE_BYTES``.

    Each non-ASCII line of the sample votes for UTF-8 (tried first: GB18030 text is almost
    never valid UTF-8, while UTF-8 bytes often decode as GB18030 mojibake) or GB18030 (a
    superset of GBK and GB2312). charset-normalizer decides only when neither fits.
    """
    with open(path, "rb") as fh:
        sample = fh.read(ENCODING_SAMPLE_BYTES)
    for bom, encoding in (
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if sample.startswith(bom):
            # UTF-16/32 keep their BOM: the codec needs it for the byte order.
            return encoding, len(bom) if encoding == "utf-8" else 0
    if len(sample) == ENCODING_SAMPLE_BYTES and b"\n" in sample:
        sample = sample[: sample.rindex(b"\n") + 1]  # do not judge a character cut in two
    votes: Counter[str] = Counter()
    undecided = 0
    for line in sample.splitlines():
        if line.isascii():
            continue
        for encoding in ("utf-8", "gb18030"):
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                continue
            votes[encoding] += 1
            break
        else:
            undecided += 1
    if b"\x00" in sample or (undecided and undecided >= sum(votes.values())):
        from charset_normalizer import from_bytes

        best = from_bytes(sample).best()
        if best is None or (b"\x00" in sample and not best.encoding.startswith("utf_")):
            raise DataFileError(
                f"{path}: cannot tell the text encoding (binary data?); save it as CSV UTF-8"
            )
        return best.encoding, 0
    return (votes.most_common(1)[0][0] if votes else "utf-8"), 0


class _LineDecoder:
    """Iterates a binary file's lines as text, decoding each line on its own.

    UTF-8 is tried first, then the file's encoding, then GB18030; a line valid in none is
    decoded with replacement characters and its problem is queued in ``problems`` for the
    CSV record it belongs to. ``consumed`` holds the raw text since the last record, so a
    record the csv module rejects can still be written out.
    """

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self.raw = raw
        self.encoding = encoding
        order = ["utf-8", encoding, "gb18030"]
        self.order = list(dict.fromkeys(e for e in order if e.replace("_", "-") != "utf-8"))
        self.order.insert(0, "utf-8")
        self.lineno = 0
        self.problems: list[str] = []
        self.consumed: list[str] = []
        self.by_encoding: Counter[str] = Counter()
        self.first_line: dict[str, int] = {}

    def __iter__(self) -> _LineDecoder:
        return self

    def __next__(self) -> str:
        line = self.raw.readline()
        if not line:
            raise StopIteration
        self.lineno += 1
        text: str | None = None
        if line.isascii():
            text = line.decode("ascii")
        else:
            for encoding in self.order:
                try:
                    text = line.decode(encoding)
                except UnicodeDecodeError:
                    continue
                self.by_encoding[encoding] += 1
                self.first_line.setdefault(encoding, self.lineno)
                break
        if text is None:
            self.problems.append(
                f"encoding: line {self.lineno} is not valid UTF-8 or GB18030"
                " (decoded with replacement characters)"
            )
            text = line.decode(self.encoding, "replace")
        self.consumed.append(text)
        return text


def _sniff_delimiter(header_line: str) -> str:
    """The delimiter of a CSV, from its header: the most frequent of , tab ; | outside quotes."""
    unquoted = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: unquoted.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvSource(Source):
    """A CSV file read line by line (see :class:`_LineDecoder`)."""

    def __init__(self, path: Path, text_col: str | None, title_col: str | None,
                 date_col: str | None) -> None:  # fmt: skip
        self.path = path
        self.notes = []
        self.encoding, skip = _detect_encoding(path)
        csv.field_size_limit(2**31 - 1)  # a 1 MB letter is a row with an error, not a crash
        self._raw: BinaryIO
        if self.encoding.startswith("utf-16") or self.encoding.startswith("utf-32"):
            # Not line-decodable byte-wise (b"\n" is two or four bytes): re-encode as UTF-8.
            text = io.TextIOWrapper(open(path, "rb"), encoding=self.encoding, newline="")  # noqa: SIM115
            self._raw = _Utf8Reencoder(text)
        else:
            self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
            self._raw.seek(skip)
        self._lines = _LineDecoder(self._raw, self.encoding)
        try:
            first = next(self._lines, None)
        except OSError as exc:
            raise DataFileError(f"{path}: cannot read: {exc}") from exc
        if first is None:
            raise DataFileError(f"{path}: the file is empty (no header row)")
        self.delimiter = _sniff_delimiter(first)
        self._reader = csv.reader(
            _chain_first(first, self._lines), delimiter=self.delimiter, strict=False
        )
        try:
            header = next(self._reader)
        except csv.Error as exc:
            raise DataFileError(f"{path}: cannot read the header row: {exc}") from exc
        self._lines.problems.clear()
        self._lines.consumed.clear()
        header = [h.replace("\ufeff", "").strip() for h in header]
        self.columns = _dedupe([h or f"column_{i + 1}" for i, h in enumerate(header)])
        where = str(path)
        text_i = find_column(self.columns, text_col, TEXT_COLUMNS)
        if text_i is None:
            raise _missing_column("text", text_col, TEXT_COLUMNS, where, self.columns, "--text-col")
        title_i = find_column(self.columns, title_col, TITLE_COLUMNS)
        if title_col and title_i is None:
            raise _missing_column("title", title_col, (), where, self.columns, "--title-col")
        date_i = find_column(self.columns, date_col, DATE_COLUMNS)
        if date_col and date_i is None:
            raise _missing_column("date", date_col, (), where, self.columns, "--date-col")
        self._idx = (text_i, title_i, date_i)
        self.text_column = self.columns[text_i]
        self.title_column = self.columns[title_i] if title_i is not None else None
        self.date_column = self.columns[date_i] if date_i is not None else None
        reencoded = isinstance(self._raw, _Utf8Reencoder)
        self.estimated_rows = None if reencoded else max(0, _count_lines(path) - 1)

    def rows(self) -> Iterator[SourceRow]:
        width = len(self.columns)
        text_i, title_i, date_i = self._idx
        lines = self._lines
        blank = 0
        while True:
            try:
                record = next(self._reader)
                issue = lines.problems[0] if lines.problems else None
            except StopIteration:
                break
            except csv.Error as exc:
                # Keep the row: its raw text goes into the text column, marked as an error.
                record = [""] * width
                record[text_i] = "".join(lines.consumed).rstrip("\r\n")
                issue = f"malformed_row: line {lines.lineno}: {exc}"
            except OSError as exc:
                raise DataFileError(
                    f"{self.path}: read error after line {lines.lineno}: {exc}"
                ) from exc
            lines.problems.clear()
            lines.consumed.clear()
            if not record:
                blank += 1  # a blank line is not a row (pandas skips them too)
                continue
            if len(record) > width:
                issue = issue or (
                    f"malformed_row: line {lines.lineno} has {len(record)} fields, the header"
                    f" has {width} (extra fields joined into the last column)"
                )
                record = [*record[: width - 1], self.delimiter.join(record[width - 1 :])]
            elif len(record) < width:
                record = record + [""] * (width - len(record))
            yield SourceRow(
                values=record,
                text=record[text_i],
                title=record[title_i] if title_i is not None else "",
                date=record[date_i] if date_i is not None else None,
                issue=issue,
            )
        if blank:
            self.notes.append(f"{blank} blank line(s) skipped (not rows)")
        self._note_encodings()

    def _note_encodings(self) -> None:
        used = {e: n for e, n in self._lines.by_encoding.items() if n}
        main = self.encoding.replace("_", "-").lower()
        for encoding, count in used.items():
            if encoding.replace("_", "-").lower() != main and main not in ("utf-16", "utf-32"):
                first = self._lines.first_line[encoding]
                self.notes.append(
                    f"mixed encodings: {count} line(s) were {encoding.upper()} in a"
                    f" {self.encoding.upper()} file (first: line {first});"
                    " each line was decoded on its own"
                )

    def close(self) -> None:
        self._raw.close()


def _chain_first(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


class _Utf8Reencoder(io.RawIOBase):
    """A binary ``readline`` view of a text stream, as UTF-8 (used for UTF-16/32 CSVs)."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        return self._text.readline().encode("utf-8")

    def close(self) -> None:
        self._text.close()
        super().close()


def _count_lines(path: Path) -> int:
    """Newlines in a file (an estimate of its rows: quoted fields may hold newlines)."""
    count = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            count += block.count(b"\n")
    return count


# --- XLSX -----------------------------------------------------------------------------------


def _col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def _col_letters(index: int) -> str:
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _read_merges(ws: Any) -> list[tuple[int, int, int, int]]:
    """Merged ranges of a read-only sheet as (min_row, min_col, max_row, max_col).

    openpyxl's read-only mode does not expose them; they sit in ``<mergeCells>`` after the
    sheet data, so the sheet XML is scanned once, a block at a time.
    """
    merges = []
    tail = b""
    with ws._get_source() as xml:
        while block := xml.read(1 << 20):
            data = tail + block
            last_end = 0
            for m in _MERGE_REF.finditer(data):
                c1, r1, c2, r2 = m.groups()
                merges.append((int(r1), _col_index(c1.decode()), int(r2), _col_index(c2.decode())))
                last_end = m.end()
            tail = data[max(last_end, len(data) - 200) :]
    return sorted(set(merges))


@dataclass
class _Sheet:
    name: str
    columns: list[str]
    header_end: int  # last header row (1-based); data starts below it
    text_i: int
    title_i: int | None
    date_i: int | None
    merges: list[tuple[int, int, int, int]]
    max_row: int | None


class XlsxSource(Source):
    """Every sheet (or ``sheet``) of an XLSX workbook that has a text column.

    With several sheets the output gets a leading ``sheet`` column and the union of the
    sheets' columns, in order of first appearance.
    """

    def __init__(self, path: Path, sheet: str | None, text_col: str | None,
                 title_col: str | None, date_col: str | None) -> None:  # fmt: skip
        import openpyxl

        self.path = path
        self.notes = []
        try:
            self._wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # zip, XML and openpyxl errors all mean "not a readable XLSX"
            raise DataFileError(
                f"{path}: not a readable XLSX file ({type(exc).__name__}: {exc})"
            ) from exc
        names = list(self._wb.sheetnames)
        if sheet is not None and sheet not in names:
            raise DataFileError(f"{path}: no sheet {sheet!r}; sheets are {', '.join(names)}")
        self.sheets: list[_Sheet] = []
        for name in [sheet] if sheet is not None else names:
            try:
                info = self._prepare(self._wb[name], name, text_col, title_col, date_col)
            except DataFileError:
                raise
            except Exception as exc:
                raise DataFileError(
                    f"{path}: sheet {name!r} cannot be read ({type(exc).__name__}: {exc})"
                ) from exc
            if info is None:
                if sheet is not None or len(names) == 1:
                    self._missing(name, text_col)
                self.notes.append(f"sheet {name!r} skipped: no text column")
                continue
            self.sheets.append(info)
        if not self.sheets:
            self._missing(", ".join(names), text_col)
        multi = len(self.sheets) > 1
        union: list[str] = []
        for info in self.sheets:
            union.extend(c for c in info.columns if c not in union)
        self._sheet_col = None
        if multi:
            name = "sheet" if "sheet" not in union else "_sheet"
            union.insert(0, name)
            self._sheet_col = name
        self.columns = union
        first = self.sheets[0]
        self.text_column = first.columns[first.text_i]
        self.title_column = first.columns[first.title_i] if first.title_i is not None else None
        self.date_column = first.columns[first.date_i] if first.date_i is not None else None
        rows = [s.max_row - s.header_end for s in self.sheets if s.max_row]
        self.estimated_rows = sum(rows) if len(rows) == len(self.sheets) else None

    def _missing(self, where: str, text_col: str | None) -> None:
        what = f"column {text_col!r}" if text_col else "text column"
        hint = (
            "" if text_col else f" (looked for {'/'.join(TEXT_COLUMNS)}; name it with --text-col)"
        )
        raise DataFileError(
            f"{self.path}: no {what} in the first {HEADER_SCAN_ROWS} rows of sheet(s) {where}{hint}"
        )

    def _prepare(self, ws: Any, name: str, text_col: str | None, title_col: str | None,
                 date_col: str | None) -> _Sheet | None:  # fmt: skip
        merges = _read_merges(ws)
        head = [list(r) for r in ws.iter_rows(max_row=HEADER_SCAN_ROWS, values_only=True)]
        if not head:
            return None
        width = max(len(r) for r in head)
        head = [r + [None] * (width - len(r)) for r in head]
        # Fill merged ranges in the scanned rows so every cell of a merged header has its name.
        for r1, c1, r2, c2 in merges:
            if r1 > len(head):
                continue
            value = head[r1 - 1][c1 - 1] if c1 <= width else None
            for r in range(r1, min(r2, len(head)) + 1):
                for c in range(c1, min(c2, width) + 1):
                    head[r - 1][c - 1] = value
        header_row = None
        for i, row in enumerate(head, start=1):
            if find_column([_cell_text(v) for v in row], text_col, TEXT_COLUMNS) is not None:
                header_row = i
                break
        if header_row is None:
            return None
        # A merged cell that starts in the header row and reaches down makes a taller header.
        header_end = header_row
        for r1, _c1, r2, _c2 in merges:
            if r1 <= header_row <= r2:
                header_end = max(header_end, min(r2, len(head)))
        names = []
        for c in range(width):
            parts: list[str] = []
            for r in range(header_row, header_end + 1):
                text = _cell_text(head[r - 1][c]).strip()
                if text and text not in parts:
                    parts.append(text)
            names.append("/".join(parts) or f"column_{_col_letters(c + 1)}")
        # Drop trailing unnamed columns that hold nothing in the scanned rows (Excel formatting).
        while (
            names
            and names[-1].startswith("column_")
            and all(row[len(names) - 1] is None for row in head[header_end:])
        ):
            names.pop()
        names = _dedupe(names)
        if header_row > 1:
            above = [_cell_text(v) for row in head[: header_row - 1] for v in row if v is not None]
            self.notes.append(
                f"sheet {name!r}: header on row {header_row}; {header_row - 1} row(s) above it"
                f" are not data ({' '.join(above)[:60]!r})"
            )
        text_i = find_column(names, text_col, TEXT_COLUMNS)
        assert text_i is not None
        title_i = find_column(names, title_col, TITLE_COLUMNS)
        if title_col and title_i is None:
            raise _missing_column("title", title_col, (), f"{self.path} sheet {name!r}", names,
                                  "--title-col")  # fmt: skip
        date_i = find_column(names, date_col, DATE_COLUMNS)
        if date_col and date_i is None:
            raise _missing_column("date", date_col, (), f"{self.path} sheet {name!r}", names,
                                  "--date-col")  # fmt: skip
        return _Sheet(
            name=name, columns=names, header_end=header_end, text_i=text_i, title_i=title_i,
            date_i=date_i, merges=[m for m in merges if m[2] > header_end], max_row=ws.max_row,
        )  # fmt: skip

    def rows(self) -> Iterator[SourceRow]:
        positions_cache: dict[str, list[int]] = {}
        for info in self.sheets:
            ws = self._wb[info.name]
            width = len(info.columns)
            positions = positions_cache.setdefault(
                info.name, [self.columns.index(c) for c in info.columns]
            )
            starts: dict[int, list[tuple[int, int, int, int]]] = {}
            for m in info.merges:
                starts.setdefault(max(m[0], info.header_end + 1), []).append(m)
            active: list[tuple[int, int, int, Any]] = []  # (last_row, first_col, last_col, value)
            empty = 0
            rownum = info.header_end
            try:
                for raw in ws.iter_rows(min_row=info.header_end + 1, values_only=True):
                    rownum += 1
                    row = list(raw)
                    issue = None
                    if len(row) > width:
                        extra = [v for v in row[width:] if v is not None]
                        if extra:
                            issue = (
                                f"malformed_row: sheet {info.name!r} row {rownum} has values"
                                " beyond the header columns (joined into the last column)"
                            )
                            kept = [row[width - 1], *extra]
                            row[width - 1] = " | ".join(_cell_text(v) for v in kept)
                        row = row[:width]
                    elif len(row) < width:
                        row.extend([None] * (width - len(row)))
                    for _r1, c1, r2, c2 in starts.pop(rownum, ()):
                        active.append((r2, c1, c2, row[c1 - 1] if c1 <= width else None))
                    if active:
                        active = [a for a in active if a[0] >= rownum]
                        for _r2, c1, c2, value in active:
                            for c in range(c1, min(c2, width) + 1):
                                row[c - 1] = value
                    if all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
                        empty += 1  # Excel keeps formatted empty rows; they are not records
                        continue
                    values = [""] * len(self.columns)
                    for pos, value in zip(positions, row, strict=True):
                        values[pos] = _csv_value(value)
                    if self._sheet_col is not None:
                        values[0] = info.name
                    yield SourceRow(
                        values=values,
                        text=_cell_text(row[info.text_i]),
                        title=_cell_text(row[info.title_i]) if info.title_i is not None else "",
                        date=row[info.date_i] if info.date_i is not None else None,
                        issue=issue,
                    )
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
                raise DataFileError(
                    f"{self.path}: sheet {info.name!r} is corrupt after row {rownum}"
                    f" ({type(exc).__name__}: {exc}); rows before it are in the output"
                ) from exc
            except Exception as exc:  # lxml/expat parse errors have no common base class
                if "Parse" not in type(exc).__name__ and "XML" not in type(exc).__name__:
                    raise
                raise DataFileError(
                    f"{self.path}: sheet {info.name!r} is corrupt after row {rownum}"
                    f" ({type(exc).__name__}: {exc}); rows before it are in the output"
                ) from exc
            if empty:
                self.notes.append(f"sheet {info.name!r}: {empty} empty row(s) skipped (not rows)")

    def close(self) -> None:
        self._wb.close()


def open_source(
    path: str | Path,
    sheet: str | None = None,
    text_col: str | None = None,
    title_col: str | None = None,
    date_col: str | None = None,
) -> Source:
    """Open a CSV or XLSX file for streaming; raises :class:`DataFileError` when it cannot be read.

    The format is taken from the content (a zip is XLSX) and then the extension.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read: {exc}") from exc
    suffix = path.suffix.lower()
    if magic.startswith(b"\xd0\xcf\x11\xe0"):
        raise DataFileError(
            f"{path}: an Excel 97-2003 (.xls) workbook is not supported; save it as .xlsx or CSV"
        )
    if magic.startswith(b"PK\x03\x04") or suffix in (".xlsx", ".xlsm"):
        return XlsxSource(path, sheet, text_col, title_col, date_col)
    if sheet is not None:
        raise InputError(f"--sheet applies to XLSX input only, {path} is CSV")
    return CsvSource(path, text_col, title_col, date_col)


# ============================================================================================
# Classifying
# ============================================================================================

Pred = tuple[Any, ...]  # values of PRED_COLUMNS


def _error(reason: str) -> Pred:
    return ("",) * 10 + ("error", reason)


def _check_text(text: str, title: str, max_length: int) -> str | None:
    """The reason a row cannot be classified, or None (the pipeline's rules, with a code).

    As in :func:`triage.pipeline.check_text`, a row with an empty text but a title is
    classified on its title.
    """
    if not text.strip() and not title.strip():
        return "empty_text: the text (and title) is empty"
    if len(text) > max_length:
        return (
            f"text_too_long: {len(text):,} characters, the limit is {max_length:,}"
            " (TRIAGE_MAX_TEXT_LENGTH)"
        )
    if not _CJK.search(title) and not _CJK.search(text, 0, 5_000):
        return "no_chinese: the text has no Chinese characters"
    return None


def _pred(result: Any) -> Pred:
    """A pipeline ``TriageResult`` as the values of ``PRED_COLUMNS``."""
    if not hasattr(result, "candidates"):  # a plain dict (the API's JSON shape)
        return _pred_from_dict(result.to_dict() if hasattr(result, "to_dict") else result)
    # Attribute access, not to_dict(): dataclasses.asdict copies deeply, per row.
    return (
        result.label or "",
        result.label_name or "",
        f"{float(result.confidence):.4g}",
        ";".join(f"{c.label}:{float(c.probability):.3f}" for c in result.candidates[:3]),
        result.department or "",
        result.route or "",
        result.disposition or "",
        ";".join(f.id for f in result.flags),
        result.priority or "",
        "true" if result.needs_review else "false",
        "ok",
        "",
    )


def _pred_from_dict(d: dict[str, Any]) -> Pred:
    top3 = ";".join(
        f"{c['label']}:{float(c['probability']):.3f}" for c in (d.get("candidates") or [])[:3]
    )
    flags = ";".join(f["id"] if isinstance(f, dict) else str(f) for f in d.get("flags") or ())
    return (
        d.get("label") or "",
        d.get("label_name") or "",
        f"{float(d.get('confidence') or 0.0):.4g}",
        top3,
        d.get("department") or "",
        d.get("route") or "",
        d.get("disposition") or "",
        flags,
        d.get("priority") or "",
        "true" if d.get("needs_review") else "false",
        "ok",
        "",
    )


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


def _from_result(result: Any) -> Pred:
    """A ``classify_many`` entry (a result, or the error that says why not) as pred values."""
    if isinstance(result, BaseException):
        if isinstance(result, TextTooLongError):
            return _error(f"text_too_long: {_one_line(result)}")
        if isinstance(result, InputError):
            return _error(f"invalid_text: {_one_line(result)}")
        return _error(f"classify_failed: {type(result).__name__}: {_one_line(result)}")
    return _pred(result)


def classify_rows(
    pipeline: Any, texts: Sequence[str], titles: Sequence[str], max_length: int
) -> list[Pred]:
    """Predictions (``PRED_COLUMNS`` values) for each text; bad rows become error rows.

    The valid rows go to ``pipeline.classify_many`` in one vectorised call; if that raises,
    they are retried one at a time so a single bad row cannot spoil its chunk.
    """
    from triage.pipeline import PetitionInput

    preds: list[Pred | None] = [None] * len(texts)
    todo = []
    for i, (text, title) in enumerate(zip(texts, titles, strict=True)):
        reason = _check_text(text, title, max_length)
        if reason:
            preds[i] = _error(reason)
        else:
            todo.append(i)
    if todo:
        items = [PetitionInput(texts[i], titles[i]) for i in todo]
        try:
            results = pipeline.classify_many(items, max_length=max_length)
            for i, result in zip(todo, results, strict=True):
                preds[i] = _from_result(result)
        except Exception:
            for i, item in zip(todo, items, strict=True):
                try:
                    preds[i] = _from_result(
                        pipeline.classify_many([item], max_length=max_length)[0]
                    )
                except Exception as exc:
                    preds[i] = _error(f"classify_failed: {type(exc).__name__}: {_one_line(exc)}")
    return [p for p in preds if p is not None]


def load_pipeline(model: str | Path | None = None, routing: str | Path | None = None) -> Any:
    """The real pipeline (:class:`triage.pipeline.Triage`)."""
    from triage.pipeline import Triage

    return Triage.load(model=model, routing=routing)


# Per-worker state: the pipeline is loaded once per process by _init_worker.
_WORKER: dict[str, Any] = {}


def _init_worker(factory: Callable[[], Any], max_length: int) -> None:
    # Ctrl-C goes to the whole process group; only the parent decides what to do with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["max_length"] = max_length
    try:
        _WORKER["pipeline"] = factory()
    except BaseException as exc:  # reported by the first task: a raising initializer would
        _WORKER["error"] = exc  # only break the pool with no message


def _work(texts: list[str], titles: list[str]) -> list[Pred]:
    error = _WORKER.get("error")
    if error is not None:
        if isinstance(error, TriageError):
            raise error
        # Re-raised in the parent: only a plain message is sure to survive pickling.
        raise ModelError(f"cannot load the model: {type(error).__name__}: {error}")
    return classify_rows(_WORKER["pipeline"], texts, titles, _WORKER["max_length"])


# ============================================================================================
# Writing
# ============================================================================================


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return _cell_text(value)


class _CsvWriter:
    """Appends rows to a CSV, flushing per chunk so a crash leaves whole rows only."""

    def __init__(self, path: Path, header: list[str], encoding: str, append: bool) -> None:
        self.path = path
        bom = encoding == "utf-8-sig" and not append  # never a second BOM mid-file
        # The BOM is written by hand: the utf-8-sig codec is pure Python and would encode
        # row by row, the plain utf-8 one has a C fast path.
        encoding = encoding.replace("-sig", "")
        self._fh = open(path, "a" if append else "w", encoding=encoding, newline="")  # noqa: SIM115
        if bom:
            self._fh.write("\ufeff")
        self._w = csv.writer(self._fh)
        if not append:
            self._w.writerow(header)

    def write(self, rows: list[list[str]]) -> None:
        """Write rows of strings (sources and preds give strings already)."""
        self._w.writerows(rows)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _scan_output(path: Path, header: list[str], encoding: str) -> tuple[int, int]:
    """(complete rows, byte length of them) of an earlier output CSV; checks its header.

    A last record without its newline was cut by the interruption and is not counted, nor is
    anything after a record that is not a whole output row.
    """
    status_i = header.index("pred_status")
    with open(path, "rb") as fh:
        if not fh.read(1):
            return 0, 0
        fh.seek(0)

        def lines() -> Iterator[str]:
            while line := fh.readline():
                yield line.decode(encoding, "replace")

        reader = csv.reader(lines(), strict=False)
        try:
            found = next(reader)
        except (StopIteration, csv.Error) as exc:
            raise DataFileError(f"cannot resume: {path} is not a CSV output ({exc})") from exc
        found = [found[0].replace("\ufeff", ""), *found[1:]] if found else found
        if found != header:
            raise DataFileError(
                f"cannot resume: {path} has other columns than this input gives; is it the output"
                " of another file? Remove it or choose another --output"
            )
        ends = [fh.tell()]  # byte offset after the header, then after each whole row
        try:
            for record in reader:
                if len(record) != len(header) or record[status_i] not in ("ok", "error"):
                    break
                ends.append(fh.tell())
        except csv.Error:
            pass  # a quoted field cut at the end of the file
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if len(ends) > 1 and ends[-1] == size:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":  # cut in the middle of its last row
                ends.pop()
        return len(ends) - 1, ends[-1]


def _read_output_preds(
    path: Path, header: list[str], rows: int, encoding: str
) -> Iterator[list[str]]:
    """The pred columns of the first ``rows`` rows of an earlier output CSV."""
    start = len(header) - len(PRED_COLUMNS)
    with open(path, encoding=encoding, newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for i, record in enumerate(reader):
            if i >= rows:
                break
            yield record[start:]


def _xlsx_to_csv(xlsx: Path, csv_path: Path) -> None:
    """Turn a finished XLSX output back into a CSV checkpoint (to resume appending to it)."""
    import openpyxl

    wb = openpyxl.load_workbook(xlsx, read_only=True)
    try:
        with open(csv_path, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            for i, ws in enumerate(wb.worksheets):
                for j, row in enumerate(ws.iter_rows(values_only=True)):
                    if j == 0 and i > 0:
                        continue  # every sheet repeats the header
                    w.writerow([_csv_value(v) for v in row])
    finally:
        wb.close()


def _csv_to_xlsx(csv_path: Path, xlsx: Path) -> tuple[int, int]:
    """Write the CSV checkpoint as XLSX (streaming); (sheets, cells cut to Excel's limit)."""
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    cut = 0
    sheets = 0
    with open(csv_path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        conf_i = header.index("pred_confidence")
        review_i = header.index("pred_needs_review")
        ws = None
        in_sheet = XLSX_MAX_DATA_ROWS
        for record in reader:
            if in_sheet >= XLSX_MAX_DATA_ROWS:
                sheets += 1
                ws = wb.create_sheet("results" if sheets == 1 else f"results_{sheets}")
                ws.append(header)
                in_sheet = 0
            row: list[Any] = []
            for value in record:
                if len(value) > XLSX_MAX_CELL_CHARS:
                    value = value[:XLSX_MAX_CELL_CHARS]
                    cut += 1
                row.append(_ILLEGAL_XLSX_CHARS.sub(" ", value))
            if row[conf_i]:
                row[conf_i] = float(row[conf_i])
            if row[review_i] in ("true", "false"):
                row[review_i] = row[review_i] == "true"
            assert ws is not None
            ws.append(row)
            in_sheet += 1
        if ws is None:
            ws = wb.create_sheet("results")
            ws.append(header)
            sheets = 1
    tmp = xlsx.with_name(xlsx.name + ".tmp")
    wb.save(tmp)
    os.replace(tmp, xlsx)
    return sheets, cut


# ============================================================================================
# Summary and report
# ============================================================================================


def month_of(value: Any) -> str | None:
    """``YYYY-MM`` of a date cell (datetime, ``2019/1/11 15:38``, ``2019年1月``, ``20190111``)."""
    if isinstance(value, (datetime, date)):
        return f"{value.year:04d}-{value.month:02d}"
    return _month_of_text(str(value or "").strip())


@lru_cache(maxsize=8192)  # a file has few distinct date strings per month
def _month_of_text(text: str) -> str | None:
    m = _MONTH.search(text) or _COMPACT_DATE.match(text)
    if not m:
        return None
    year, month = int(m.group(1)), int(m.group(2))
    return f"{year:04d}-{month:02d}" if 1900 <= year <= 2100 and 1 <= month <= 12 else None


@dataclass
class BatchSummary:
    """What a batch run did (printed by :func:`format_summary`, saved by :func:`write_report`)."""

    input: str = ""
    output: str = ""
    rows: int = 0
    ok: int = 0
    resumed_rows: int = 0
    needs_review: int = 0
    seconds: float = 0.0
    jobs: int = 1
    errors: Counter[str] = field(default_factory=Counter)
    by_label: Counter[str] = field(default_factory=Counter)
    by_department: Counter[str] = field(default_factory=Counter)
    by_month: Counter[str] = field(default_factory=Counter)
    pivot: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    date_column: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def error_rows(self) -> int:
        return sum(self.errors.values())

    @property
    def rows_per_second(self) -> float:
        done = self.rows - self.resumed_rows
        return done / self.seconds if self.seconds > 0 else 0.0

    def add(self, pred: Sequence[Any], when: Any) -> None:
        """Count one output row (its pred values and its date cell)."""
        self.rows += 1
        status, error = pred[10], pred[11]
        if status != "ok":
            self.errors[str(error).split(":", 1)[0] or "unknown"] += 1
            return
        self.ok += 1
        label = str(pred[1] or pred[0])
        department = str(pred[4] or "(none)")
        month = month_of(when) if self.date_column else None
        self.by_label[label] += 1
        self.by_department[department] += 1
        if self.date_column:
            self.by_month[month or "unknown"] += 1
        self.pivot[(label, department, month or "")] += 1
        if pred[9] is True or pred[9] == "true":
            self.needs_review += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "rows": self.rows,
            "ok": self.ok,
            "error_rows": self.error_rows,
            "errors_by_reason": dict(self.errors.most_common()),
            "resumed_rows": self.resumed_rows,
            "needs_review": self.needs_review,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "jobs": self.jobs,
            "by_issue_type": dict(self.by_label.most_common()),
            "by_department": dict(self.by_department.most_common()),
            "by_month": dict(sorted(self.by_month.items())),
            "date_column": self.date_column,
            "notes": self.notes,
        }


def format_summary(summary: BatchSummary) -> str:
    """The end-of-run summary an analyst reads in the terminal."""
    s = summary
    lines = [
        f"{s.rows:,} rows: {s.ok:,} classified, {s.error_rows:,} errors"
        f" ({s.needs_review:,} marked needs_review)",
        f"time {s.seconds:.1f} s, {s.rows_per_second:,.0f} rows/s with {s.jobs} job(s)"
        + (
            f"; {s.resumed_rows:,} rows were in the output already (resumed)"
            if s.resumed_rows
            else ""
        ),
    ]
    if s.errors:
        reasons = ", ".join(f"{k} {v:,}" for k, v in s.errors.most_common())
        lines.append(f"errors by reason: {reasons}")

    def table(title: str, counts: Counter[str], sort_keys: bool = False) -> None:
        lines.append(title)
        items = sorted(counts.items()) if sort_keys else counts.most_common()
        total = sum(counts.values()) or 1
        for name, count in items:
            lines.append(f"  {count:>10,}  {100 * count / total:5.1f}%  {name}")

    if s.by_label:
        table("by issue type:", s.by_label)
        table("by department:", s.by_department)
    if s.by_month:
        table(f"by month ({s.date_column}):", s.by_month, sort_keys=True)
    for note in s.notes:
        lines.append(f"note: {note}")
    lines.append(f"output: {s.output}")
    return "\n".join(lines)


def _cjk_font() -> str | None:
    """A font family that has Chinese glyphs, if one is installed."""
    from matplotlib import font_manager

    preferred = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei",
                 "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC",
                 "Noto Serif CJK SC", "AR PL UMing CN")  # fmt: skip
    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in preferred:
        if name in names:
            return name
    return next((n for n in sorted(names) if "CJK" in n or "Hei" in n), None)


def _bar_chart(counts: list[tuple[str, int]], title: str, path: Path, horizontal: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = _cjk_font()
    rc = {"font.family": [font, "DejaVu Sans"]} if font else {}
    with plt.rc_context(rc):
        labels = [name for name, _ in counts]
        values = [n for _, n in counts]
        if horizontal:
            fig, ax = plt.subplots(figsize=(9, 1.2 + 0.38 * len(counts)))
            ax.barh(labels[::-1], values[::-1], color="#3b6ea5")
            ax.set_xlabel("件数")
            for y, v in enumerate(values[::-1]):
                ax.text(v, y, f" {v:,}", va="center", fontsize=8)
        else:
            fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(counts) + 2), 4.5))
            ax.bar(labels, values, color="#3b6ea5")
            ax.set_ylabel("件数")
            ax.tick_params(axis="x", rotation=60)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def write_report(summary: BatchSummary, directory: str | Path) -> list[Path]:
    """PNG bar charts (per department, per issue type, per month) and CSV pivots; the paths."""
    import json

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if summary.by_department:
        path = out / "by_department.png"
        _bar_chart(summary.by_department.most_common(), "各承办部门件数", path, horizontal=True)
        written.append(path)
        path = out / "by_issue_type.png"
        _bar_chart(summary.by_label.most_common(), "各事项类别件数", path, horizontal=True)
        written.append(path)
    months = sorted(m for m in summary.by_month if m != "unknown")
    if months:
        counts = [(m, summary.by_month[m]) for m in months]
        if summary.by_month.get("unknown"):
            counts.append(("unknown", summary.by_month["unknown"]))
        path = out / "by_month.png"
        _bar_chart(counts, f"每月件数（{summary.date_column}）", path, horizontal=False)
        written.append(path)
    # Pivot: one line per (issue type, department), one column per month, and a total.
    columns = [*months, *(["unknown"] if summary.by_month.get("unknown") else [])]
    table: dict[tuple[str, str], Counter[str]] = {}
    for (label, department, month), count in summary.pivot.items():
        table.setdefault((label, department), Counter())[month or "unknown"] += count
    path = out / "pivot.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["issue_type", "department", *columns, "total"])
        for (label, department), counts in sorted(table.items(), key=lambda kv: -kv[1].total()):
            w.writerow([label, department, *(counts.get(m, 0) for m in columns), counts.total()])
        if table:
            w.writerow(["total", "", *(summary.by_month.get(m, 0) for m in columns), summary.ok])
    written.append(path)
    path = out / "summary.json"
    path.write_text(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    written.append(path)
    return written


# ============================================================================================
# Running
# ============================================================================================


@dataclass
class BatchOptions:
    """Arguments of :func:`run_batch` (the ``triage batch`` flags)."""

    input: Path
    output: Path
    model: str | Path | None = None
    routing: str | Path | None = None
    text_col: str | None = None
    title_col: str | None = None
    date_col: str | None = None
    sheet: str | None = None
    jobs: int | None = None  # None: every core
    chunk_size: int = 500  # a worker peaks at ~350 MB with 500 rows, ~500 MB with 2,000
    resume: bool = False
    report: Path | None = None
    progress: bool = True
    output_encoding: str = "utf-8-sig"  # Excel opens BOM-marked UTF-8 CSV correctly
    max_text_length: int | None = None  # None: settings.max_text_length
    #: Builds the pipeline (in each worker); picklable. None: :func:`load_pipeline`.
    pipeline_factory: Callable[[], Any] | None = None


def default_jobs() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _output_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix == ".xlsx":
        return "xlsx"
    raise InputError(f"--output {path}: give a .csv or .xlsx file name")


class _Classifier:
    """Classifies chunks in order, in this process (jobs=1) or in a pool of workers."""

    def __init__(self, factory: Callable[[], Any], jobs: int, max_length: int) -> None:
        self.jobs = jobs
        self.max_length = max_length
        self.pending: deque[tuple[Any, Future[list[Pred]] | list[Pred]]] = deque()
        self.pool: ProcessPoolExecutor | None = None
        if jobs <= 1:
            self.pipeline = factory()
        else:
            import multiprocessing

            # fork shares the parent's imported modules (fast start); elsewhere spawn.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = ProcessPoolExecutor(
                max_workers=jobs,
                mp_context=multiprocessing.get_context(method),
                initializer=_init_worker,
                initargs=(factory, max_length),
            )

    def warm_up(self) -> None:
        """Start every worker and wait until each has loaded the model (or raise its error)."""
        if self.pool is not None:
            futures = [self.pool.submit(_work, [], []) for _ in range(self.jobs)]
            for future in futures:
                self._result(future)

    @property
    def full(self) -> bool:
        # Two chunks per worker keep every core busy while bounding memory.
        return len(self.pending) >= max(1, 2 * self.jobs) if self.pool else bool(self.pending)

    def submit(self, tag: Any, texts: list[str], titles: list[str]) -> None:
        if self.pool is None:
            self.pending.append((tag, classify_rows(self.pipeline, texts, titles, self.max_length)))
        else:
            self.pending.append((tag, self.pool.submit(_work, texts, titles)))

    def next_done(self) -> tuple[Any, list[Pred]]:
        tag, item = self.pending.popleft()
        return tag, self._result(item) if isinstance(item, Future) else item

    @staticmethod
    def _result(future: Future[list[Pred]]) -> list[Pred]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise TriageError(
                "a worker process died (out of memory?); rerun with --resume and fewer"
                " --jobs or a smaller --chunk-size"
            ) from exc

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def run_batch(options: BatchOptions) -> BatchSummary:
    """Classify every row of ``options.input`` into ``options.output``; the summary.

    Raises :class:`DataFileError`/:class:`InputError` when the job cannot proceed (nothing
    is written then, or, for a file corrupt half-way, the rows before the fault).
    """
    from triage.settings import get_settings

    opts = options
    started = time.monotonic()
    kind = _output_kind(Path(opts.output))
    if opts.chunk_size < 1:
        raise InputError("--chunk-size must be at least 1")
    jobs = opts.jobs if opts.jobs and opts.jobs > 0 else default_jobs()
    max_length = opts.max_text_length or get_settings().max_text_length
    output = Path(opts.output)
    if output.resolve() == Path(opts.input).resolve():
        raise InputError("--output must not be the --input file")
    source = open_source(opts.input, opts.sheet, opts.text_col, opts.title_col, opts.date_col)
    summary = BatchSummary(input=str(opts.input), output=str(output), jobs=jobs)
    summary.date_column = source.date_column
    classifier = None
    writer = None
    try:
        # An input column already called pred_* (re-classifying an earlier output) is kept
        # under an input_ prefix so the new predictions do not collide with it.
        columns = [f"input_{c}" if c in PRED_COLUMNS else c for c in source.columns]
        if columns != source.columns:
            summary.notes.append("input columns named pred_* were kept as input_pred_*")
        header = [*columns, *PRED_COLUMNS]
        target = output.with_name(output.name + ".partial.csv") if kind == "xlsx" else output
        encoding = opts.output_encoding if kind == "csv" else "utf-8"
        done = 0
        if opts.resume:
            if kind == "xlsx" and not target.exists() and output.exists():
                _xlsx_to_csv(output, target)  # a finished XLSX: continue from its rows
            if target.exists():
                done, length = _scan_output(target, header, encoding)
                with open(target, "r+b") as fh:
                    fh.truncate(length)
            else:
                summary.notes.append("--resume: no earlier output, started from the first row")
        # Load the model (in every worker) before touching the output: a model error then
        # leaves no half-made file behind.
        factory = opts.pipeline_factory or _default_factory(opts.model, opts.routing)
        classifier = _Classifier(factory, jobs, max_length)
        classifier.warm_up()
        output.parent.mkdir(parents=True, exist_ok=True)
        append = opts.resume and target.exists() and target.stat().st_size > 0
        writer = _CsvWriter(target, header, encoding, append=append)
        rows = source.rows()
        if done:
            # Count the rows already classified so the summary covers the whole file.
            preds = _read_output_preds(target, header, done, encoding)
            for i, (row, pred) in enumerate(zip(rows, preds, strict=False)):
                summary.add(pred, row.date)
                if i + 1 >= done:
                    break
            if summary.rows < done:
                raise DataFileError(
                    f"cannot resume: {target} has {done:,} rows but the input only {summary.rows:,}"
                )
            summary.resumed_rows = done
        total = source.estimated_rows
        progress = _progress(total, done, opts.progress)

        def drain_one() -> None:
            chunk, preds = classifier.next_done()
            out_rows = []
            for row, pred in zip(chunk, preds, strict=True):
                if row.issue:
                    pred = _error(row.issue)
                summary.add(pred, row.date)
                out_rows.append([*row.values, *pred])
            writer.write(out_rows)
            progress.update(len(chunk))

        try:
            chunk: list[SourceRow] = []
            for row in rows:
                chunk.append(row)
                if len(chunk) >= opts.chunk_size:
                    _submit(classifier, chunk)
                    chunk = []
                    while classifier.full:
                        drain_one()
            if chunk:
                _submit(classifier, chunk)
            while classifier.pending:
                drain_one()
        finally:
            progress.close()
        summary.notes.extend(source.notes)
        writer.close()
        writer = None
        if kind == "xlsx":
            if opts.progress:
                print(f"writing {output} …", file=sys.stderr)
            sheets, cut = _csv_to_xlsx(target, output)
            target.unlink()
            if sheets > 1:
                summary.notes.append(
                    f"{summary.rows:,} rows exceed one Excel sheet: written in {sheets} sheets"
                    " (results, results_2, …)"
                )
            if cut:
                summary.notes.append(
                    f"{cut} cell(s) longer than Excel's {XLSX_MAX_CELL_CHARS:,} characters were"
                    " cut in the XLSX output; write CSV to keep them whole"
                )
    finally:
        if writer is not None:
            writer.close()
        if classifier is not None:
            classifier.close()
        source.close()
    summary.seconds = time.monotonic() - started
    if opts.report is not None:
        write_report(summary, opts.report)
    return summary


def _submit(classifier: _Classifier, chunk: list[SourceRow]) -> None:
    # Rows with a reading problem are not sent; their error pred is filled in on the way out.
    classifier.submit(
        chunk,
        [r.text if not r.issue else "" for r in chunk],
        [r.title if not r.issue else "" for r in chunk],
    )


class _Factory:
    """Picklable ``load_pipeline(model, routing)``."""

    def __init__(self, model: str | Path | None, routing: str | Path | None) -> None:
        self.model = model
        self.routing = routing

    def __call__(self) -> Any:
        return load_pipeline(self.model, self.routing)


def _default_factory(model: str | Path | None, routing: str | Path | None) -> _Factory:
    return _Factory(model, routing)


def _progress(total: int | None, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total if total and total >= initial else None,
        initial=initial,
        unit=" rows",
        unit_scale=False,
        file=sys.stderr,
        disable=not enabled,
        smoothing=0.05,
        dynamic_ncols=True,
        mininterval=0.5,
        desc="classifying",
    )
