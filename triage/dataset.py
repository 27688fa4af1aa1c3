"""Reading labelled training / evaluation tables (CSV in any common encoding, or XLSX)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from triage.errors import DataFileError

__all__ = ["LabelledData", "load_labelled", "read_table"]

_ENCODINGS = ("utf-8-sig", "gb18030")
_TEXT_NAMES = ("text", "信访内容", "留言详情", "内容", "正文", "content")
_TITLE_NAMES = ("title", "标题", "留言主题", "主题")
_LABEL_NAMES = ("label", "类别", "一级标签", "事项类别", "issue_type")


def read_table(path: str | Path, sheet: str | int | None = 0) -> pd.DataFrame:
    """Read a CSV (UTF-8, UTF-8 with BOM, GB18030/GBK) or XLSX file as strings."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            return pd.read_excel(path, sheet_name=sheet, dtype=str, keep_default_na=False)
        if suffix not in (".csv", ".txt", ".tsv"):
            raise DataFileError(
                f"{path}: expected a .csv or .xlsx file, got {suffix or 'no suffix'}"
            )
        last: Exception | None = None
        for enc in _ENCODINGS:
            try:
                return pd.read_csv(
                    path,
                    dtype=str,
                    keep_default_na=False,
                    encoding=enc,
                    sep="\t" if suffix == ".tsv" else ",",
                )
            except UnicodeDecodeError as exc:
                last = exc
        raise DataFileError(f"{path}: not UTF-8 or GB18030 text ({last})")
    except DataFileError:
        raise
    except Exception as exc:  # pandas/openpyxl raise many kinds for a broken file
        raise DataFileError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def _column(
    df: pd.DataFrame,
    wanted: str | None,
    names: tuple[str, ...],
    what: str,
    path: Path,
    required: bool = True,
) -> str | None:
    lookup = {str(c).strip().lower(): c for c in df.columns}
    for name in [wanted] if wanted else list(names):
        if name.strip().lower() in lookup:
            return lookup[name.strip().lower()]
    if wanted or required:
        raise DataFileError(
            f"{path}: no {what} column {wanted or names[0]!r}; columns are "
            f"{[str(c) for c in df.columns]} (choose one with --{what}-col)"
        )
    return None


@dataclass
class LabelledData:
    """Texts (title and body joined by a newline) with labels, and where they came from."""

    texts: list[str]
    labels: list[str]
    path: Path
    rows_read: int
    dropped: dict[str, int] = field(default_factory=dict)


def load_labelled(
    path: str | Path,
    text_col: str | None = None,
    title_col: str | None = None,
    label_col: str | None = None,
) -> LabelledData:
    """Read a labelled table; rows with a blank label or blank text are dropped and counted."""
    path = Path(path)
    df = read_table(path)
    tcol = _column(df, text_col, _TEXT_NAMES, "text", path)
    lcol = _column(df, label_col, _LABEL_NAMES, "label", path)
    hcol = _column(df, title_col, _TITLE_NAMES, "title", path, required=False)
    texts, labels, dropped = [], [], {"blank label": 0, "blank text": 0}
    titles = df[hcol].tolist() if hcol is not None else [""] * len(df)
    for text, title, label in zip(df[tcol].tolist(), titles, df[lcol].tolist(), strict=True):
        label = str(label).strip()
        text, title = str(text or ""), str(title or "")
        if not label:
            dropped["blank label"] += 1
        elif not (text.strip() or title.strip()):
            dropped["blank text"] += 1
        else:
            texts.append(f"{title}\n{text}" if title.strip() else text)
            labels.append(label)
    if not texts:
        raise DataFileError(f"{path}: no rows with both a text and a label")
    return LabelledData(texts, labels, path, len(df), {k: v for k, v in dropped.items() if v})
