"""triage.bulk: reading CSV/XLSX in any of their real-world shapes, and classifying in bulk.

These tests use a fake pipeline (keyword rules) so they check the file handling, not the model;
tests/test_cli_batch.py runs the real command on a tiny trained model.
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from triage import bulk
from triage.bulk import PRED_COLUMNS, BatchOptions, month_of, open_source, run_batch
from triage.errors import DataFileError, InputError, ModelError

LABELS = {
    "land_acquisition": ("征地拆迁补偿", "自然资源局 征地管理科", "受理"),
    "urban_housing": ("住房与城乡建设", "住房和城乡建设局", "转送"),
    "mining": ("矿产资源", "自然资源局 矿产资源管理科", "受理"),
}


class FakeResult:
    def __init__(self, text: str) -> None:
        self.label = (
            "land_acquisition"
            if "征地" in text
            else "mining"
            if "采矿" in text
            else "urban_housing"
        )
        self.text = text

    def to_dict(self) -> dict[str, Any]:
        name, department, disposition = LABELS[self.label]
        others = [k for k in LABELS if k != self.label]
        return {
            "label": self.label,
            "label_name": name,
            "confidence": 0.8,
            "candidates": [
                {"label": self.label, "name": name, "probability": 0.8},
                {"label": others[0], "name": "", "probability": 0.15},
                {"label": others[1], "name": "", "probability": 0.05},
            ],
            "needs_review": "不确定" in self.text,
            "department": department,
            "route": "litigation" if "法院" in self.text else "none",
            "disposition": disposition,
            "flags": [{"id": "collective", "name": "集体访", "evidence": ["全体村民"]}]
            if "全体村民" in self.text
            else [],
            "priority": "high" if "全体村民" in self.text else "normal",
        }


class FakePipeline:
    """classify_many like triage.pipeline.Triage; raises on BOOM, refuses 拒绝 (an error entry)."""

    calls = 0

    def classify_many(self, items: list[Any], max_length: int | None = None) -> list[Any]:
        FakePipeline.calls += 1
        if any("BOOM" in item.text for item in items):
            raise RuntimeError("tokenizer exploded")
        return [
            InputError("the pipeline refused it")
            if "拒绝" in item.text
            else FakeResult(item.title + item.text)
            for item in items
        ]


def fake_factory() -> FakePipeline:
    return FakePipeline()


def failing_factory() -> FakePipeline:
    raise FileNotFoundError("models/nowhere/model.skops")


def run(tmp_path: Path, src: Path, out_name: str = "out.csv", **kw: Any) -> bulk.BatchSummary:
    kw.setdefault("jobs", 1)
    kw.setdefault("progress", False)
    kw.setdefault("pipeline_factory", fake_factory)
    return run_batch(BatchOptions(input=src, output=tmp_path / out_name, **kw))


def read_out(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


ROWS = [
    ["编号", "标题", "信访内容", "留言时间"],
    ["1", "征地款", "我们村的征地补偿款至今没有发放，全体村民要求说法", "2019/1/11 15:38:49"],
    ["2", "", "小区物业乱收费，电梯长期停运", "2019-02-03"],
    ["3", "采矿", "有人在后山非法采矿，房屋开裂", "2019年3月5日"],
]


# --------------------------------------------------------------------------------------------
# CSV encodings, delimiters, shapes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16"])
def test_csv_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    src = write_csv(tmp_path / "in.csv", ROWS, encoding)
    summary = run(tmp_path, src)
    out = read_out(tmp_path / "out.csv")
    assert [r["信访内容"] for r in out] == [r[2] for r in ROWS[1:]]
    assert list(out[0])[:4] == ROWS[0]  # no BOM glued to the first column name
    assert [r["pred_label"] for r in out] == ["land_acquisition", "urban_housing", "mining"]
    assert summary.rows == 3 and summary.error_rows == 0


def test_gb18030_file_with_characters_outside_gbk(tmp_path: Path) -> None:
    rows = [["text"], ["䶮某某反映征地问题𠮷"], ["小区噪音"]]
    src = write_csv(tmp_path / "in.csv", rows, "gb18030")
    run(tmp_path, src)
    assert [r["text"] for r in read_out(tmp_path / "out.csv")] == [rows[1][0], rows[2][0]]


def test_mixed_encoding_lines_are_decoded_line_by_line(tmp_path: Path) -> None:
    src = tmp_path / "mixed.csv"
    src.write_bytes(
        "id,text\n1,征地补偿没有到位\n".encode()
        + "2,小区物业乱收费（GBK 导出）\n".encode("gbk")
        + b"3,\xff\xfe\xfa\xfb\n"  # valid in neither
        + "4,采矿\n".encode()
    )
    summary = run(tmp_path, src)
    out = read_out(tmp_path / "out.csv")
    assert [r["id"] for r in out] == ["1", "2", "3", "4"]
    assert out[1]["text"] == "小区物业乱收费（GBK 导出）"
    assert out[1]["pred_status"] == "ok"
    assert out[2]["pred_status"] == "error"
    assert out[2]["pred_error"].startswith("encoding: line 4 ")
    assert summary.errors == {"encoding": 1}
    assert any("GB18030" in note and "line 3" in note for note in summary.notes)


def test_gbk_file_with_a_utf8_line(tmp_path: Path) -> None:
    # UTF-8 bytes usually *decode* as GB18030 (mojibake), so UTF-8 must be tried first.
    src = tmp_path / "mixed.csv"
    src.write_bytes(
        "text\n征地补偿没有到位\n小区物业乱收费\n".encode("gbk") + "非法采矿\n".encode()
    )
    run(tmp_path, src)
    assert [r["text"] for r in read_out(tmp_path / "out.csv")] == [
        "征地补偿没有到位", "小区物业乱收费", "非法采矿",
    ]  # fmt: skip


def test_tab_delimited_quoted_multiline_and_ragged_rows(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(
        'id\ttext\tnote\n1\t"第一行\n第二行，征地"\tx\n2\t小区噪音\n3\t采矿\ta\tb\textra\n',
        encoding="utf-8",
    )
    summary = run(tmp_path, src)
    out = read_out(tmp_path / "out.csv")
    assert [r["id"] for r in out] == ["1", "2", "3"]
    assert out[0]["text"] == "第一行\n第二行，征地" and out[0]["pred_status"] == "ok"
    assert out[1]["note"] == "" and out[1]["pred_status"] == "ok"  # short row padded
    assert out[2]["pred_status"] == "error" and out[2]["pred_error"].startswith("malformed_row")
    assert out[2]["note"] == "a\tb\textra"  # nothing lost
    assert summary.rows == 3


def test_bad_rows_get_a_reason_and_are_never_dropped(tmp_path: Path) -> None:
    huge = "征地" * 600_000  # 1.2 M characters, about 3.6 MB in UTF-8
    rows = [
        ["text", "title"],
        ["", ""],
        ["   \t ", "只有标题"],
        [huge, ""],
        ["This is an English complaint about noise.", ""],
        ["12345 !!!", ""],
        ["含有BOOM的文本", ""],
        ["管道拒绝的文本", ""],
        ["正常的征地信访", ""],
    ]
    src = write_csv(tmp_path / "in.csv", rows)
    summary = run(tmp_path, src, chunk_size=100)
    out = read_out(tmp_path / "out.csv")
    assert len(out) == len(rows) - 1
    assert out[2]["text"] == huge  # the row and its text are kept whole
    reasons = [r["pred_error"].split(":")[0] for r in out]
    assert reasons == [
        "empty_text", "", "text_too_long", "no_chinese", "no_chinese", "classify_failed",
        "invalid_text", "",
    ]  # fmt: skip
    assert out[1]["pred_status"] == "ok"  # no text but a title: classified on the title
    assert out[-1]["pred_status"] == "ok" and out[-1]["pred_label"] == "land_acquisition"
    errors = [r for r in out if r["pred_error"]]
    assert all(r["pred_status"] == "error" and r["pred_label"] == "" for r in errors)
    assert summary.errors["empty_text"] == 1 and summary.ok == 2
    assert "RuntimeError: tokenizer exploded" in out[5]["pred_error"]
    assert out[6]["pred_error"] == "invalid_text: the pipeline refused it"


def test_pred_columns_format(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", ROWS)
    run(tmp_path, src)
    out = read_out(tmp_path / "out.csv")
    assert list(out[0]) == [*ROWS[0], *PRED_COLUMNS]
    first = out[0]
    assert first["pred_label_name"] == "征地拆迁补偿"
    assert first["pred_top3"] == "land_acquisition:0.800;urban_housing:0.150;mining:0.050"
    assert first["pred_flags"] == "collective" and first["pred_priority"] == "high"
    assert first["pred_confidence"] == "0.8" and first["pred_needs_review"] == "false"
    assert first["pred_route"] == "none" and first["pred_disposition"] == "受理"
    assert out[1]["pred_flags"] == ""


@pytest.mark.parametrize(
    ("header", "flag", "expected"),
    [
        (["ID", "Title", "TEXT"], None, "TEXT"),
        (["编号", "留言主题", "留言详情"], None, "留言详情"),
        (["编号", " 正文 "], None, " 正文 "),
        (["编号", "内容"], None, "内容"),
        (["a", "来信摘要"], "来信摘要", "来信摘要"),
        (["a", "Body"], "body", "Body"),
    ],
)
def test_text_column_detection(tmp_path: Path, header: list[str], flag: str | None,
                               expected: str) -> None:  # fmt: skip
    src = write_csv(tmp_path / "in.csv", [header, ["1"] * (len(header) - 1) + ["征地补偿"]])
    source = open_source(src, text_col=flag)
    try:
        assert source.text_column == expected.strip()
    finally:
        source.close()


def test_title_column_is_used(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [["留言主题", "留言详情"], ["征地补偿", "钱没到"]])
    run(tmp_path, src)
    assert read_out(tmp_path / "out.csv")[0]["pred_label"] == "land_acquisition"


def test_missing_text_column_is_a_clear_error(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [["id", "备注"], ["1", "征地"]])
    with pytest.raises(DataFileError, match=r"no text column.*'id', '备注'.*--text-col"):
        run(tmp_path, src)
    with pytest.raises(DataFileError, match="no column 'body'"):
        run(tmp_path, src, text_col="body")
    assert not (tmp_path / "out.csv").exists()  # nothing half-written


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02\x03" * 1000])
def test_empty_or_binary_csv(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    with pytest.raises(DataFileError):
        run(tmp_path, src)


def test_input_pred_columns_are_kept_under_another_name(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [["text", "pred_label"], ["征地", "old"]])
    summary = run(tmp_path, src)
    out = read_out(tmp_path / "out.csv")
    assert out[0]["input_pred_label"] == "old" and out[0]["pred_label"] == "land_acquisition"
    assert any("input_pred_" in n for n in summary.notes)


def test_bad_output_name_and_same_file(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", ROWS)
    with pytest.raises(InputError, match=r"\.csv or \.xlsx"):
        run(tmp_path, src, out_name="out.json")
    with pytest.raises(InputError, match="must not be"):
        run(tmp_path, src, out_name="in.csv")


# --------------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------------


def _merged_workbook(path: Path) -> Path:
    """A government-style register: a title row, a two-row header with merged cells."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "2019年登记"
    ws.append(["某县2019年信访事项登记表", None, None, None, None])
    ws.merge_cells("A1:E1")
    ws.append(["编号", "来信人", None, "信访内容", "日期"])
    ws.append([None, "姓名", "电话", None, None])
    ws.merge_cells("A2:A3")  # vertical
    ws.merge_cells("B2:C2")  # horizontal group header
    ws.merge_cells("D2:D3")
    ws.merge_cells("E2:E3")
    ws.append([1, "张三", "138", "村里征地补偿款没有发", datetime(2019, 1, 5)])
    ws.append([2, "李四", "139", "小区物业乱收费", None])
    ws.merge_cells("E4:E5")  # one date for two rows
    ws.append([None, None, None, None, None])  # formatted empty row
    ws.append([3, "王五", "137", "非法采矿", datetime(2019, 2, 1)])
    wb.save(path)
    return path


def test_xlsx_with_title_row_and_merged_header_cells(tmp_path: Path) -> None:
    src = _merged_workbook(tmp_path / "in.xlsx")
    source = open_source(src)
    assert source.columns == ["编号", "来信人/姓名", "来信人/电话", "信访内容", "日期"]
    assert source.text_column == "信访内容" and source.date_column == "日期"
    source.close()
    summary = run(tmp_path, src, report=tmp_path / "report")
    out = read_out(tmp_path / "out.csv")
    assert [r["编号"] for r in out] == ["1", "2", "3"]
    assert [r["日期"] for r in out] == ["2019-01-05 00:00:00"] * 2 + ["2019-02-01 00:00:00"]
    assert [r["pred_label"] for r in out] == ["land_acquisition", "urban_housing", "mining"]
    assert summary.by_month == {"2019-01": 2, "2019-02": 1}
    assert any("header on row 2" in n for n in summary.notes)
    assert any("1 empty row" in n for n in summary.notes)


def test_xlsx_every_sheet_or_one(tmp_path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    a = wb.active
    a.title = "一月"
    a.append(["标题", "内容"])
    a.append(["征地", "补偿款"])
    b = wb.create_sheet("二月")
    b.append(["内容", "区县"])
    b.append(["物业问题", "A3区"])
    b.append(["采矿问题", "A4区"])
    notes = wb.create_sheet("说明")
    notes.append(["本表由信访局导出"])
    wb.save(tmp_path / "in.xlsx")

    summary = run(tmp_path, tmp_path / "in.xlsx")
    out = read_out(tmp_path / "out.csv")
    assert list(out[0])[:4] == ["sheet", "标题", "内容", "区县"]
    assert [(r["sheet"], r["内容"], r["区县"]) for r in out] == [
        ("一月", "补偿款", ""), ("二月", "物业问题", "A3区"), ("二月", "采矿问题", "A4区"),
    ]  # fmt: skip
    assert any("说明" in n and "skipped" in n for n in summary.notes)

    run(tmp_path, tmp_path / "in.xlsx", out_name="one.csv", sheet="二月")
    one = read_out(tmp_path / "one.csv")
    assert list(one[0])[:2] == ["内容", "区县"] and len(one) == 2
    with pytest.raises(DataFileError, match=r"no sheet '三月'.*一月, 二月, 说明"):
        run(tmp_path, tmp_path / "in.xlsx", sheet="三月")
    with pytest.raises(DataFileError, match="no text column"):
        run(tmp_path, tmp_path / "in.xlsx", sheet="说明")


def test_corrupt_and_legacy_excel_files(tmp_path: Path) -> None:
    src = _merged_workbook(tmp_path / "good.xlsx")
    data = src.read_bytes()
    (tmp_path / "cut.xlsx").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match="not a readable XLSX"):
        run(tmp_path, tmp_path / "cut.xlsx")
    (tmp_path / "fake.xlsx").write_text("this is not excel", encoding="utf-8")
    with pytest.raises(DataFileError, match="not a readable XLSX"):
        run(tmp_path, tmp_path / "fake.xlsx")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    with pytest.raises(DataFileError, match=r"\.xls.*not supported"):
        run(tmp_path, tmp_path / "old.xls")
    # A workbook whose sheet XML is damaged inside a valid zip.
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(broken, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet1"):
                body = body[: len(body) // 2]
            zout.writestr(item, body)
    with pytest.raises(DataFileError, match=r"broken\.xlsx"):
        run(tmp_path, broken)


def test_xlsx_output_typed_and_split_over_sheets(tmp_path: Path, monkeypatch: Any) -> None:
    import openpyxl

    monkeypatch.setattr(bulk, "XLSX_MAX_DATA_ROWS", 2)
    rows = [["text"], *[[f"征地{i}"] for i in range(5)], ["小区" + "长" * 40_000]]
    src = write_csv(tmp_path / "in.csv", rows)
    summary = run(tmp_path, src, out_name="out.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "out.xlsx", read_only=True)
    assert wb.sheetnames == ["results", "results_2", "results_3"]
    got = []
    for ws in wb.worksheets:
        sheet_rows = list(ws.iter_rows(values_only=True))
        assert sheet_rows[0] == ("text", *PRED_COLUMNS)
        got.extend(sheet_rows[1:])
    wb.close()
    assert [r[0][:3] for r in got] == ["征地0", "征地1", "征地2", "征地3", "征地4", "小区长"]
    assert got[0][3] == 0.8 and got[0][10] is False  # confidence a number, review a boolean
    assert len(got[-1][0]) == bulk.XLSX_MAX_CELL_CHARS
    assert any("3 sheets" in n for n in summary.notes)
    assert any("cut in the XLSX output" in n for n in summary.notes)
    assert not (tmp_path / "out.xlsx.partial.csv").exists()


# --------------------------------------------------------------------------------------------
# Parallelism, resume, report
# --------------------------------------------------------------------------------------------


def _many_rows(n: int) -> list[list[str]]:
    texts = ["征地补偿", "小区物业", "非法采矿", "", "english only"]
    return [["id", "text", "date"]] + [
        [str(i), texts[i % 5] + str(i) if texts[i % 5] else "", f"2019-{1 + i % 12:02d}-01"]
        for i in range(n)
    ]


def test_jobs_give_the_same_output_as_one_process(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", _many_rows(2_000))
    one = run(tmp_path, src, out_name="one.csv", jobs=1, chunk_size=97)
    two = run(tmp_path, src, out_name="two.csv", jobs=2, chunk_size=97)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert one.to_dict()["by_issue_type"] == two.to_dict()["by_issue_type"]
    assert two.jobs == 2 and two.rows == 2_000 and two.errors["empty_text"] == 400


def test_worker_model_error_is_reported(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", ROWS)
    for jobs in (1, 2):
        with pytest.raises((ModelError, FileNotFoundError), match="nowhere"):
            run(tmp_path, src, jobs=jobs, pipeline_factory=failing_factory)


def _truncate_after_rows(path: Path, rows: int, cut_into_next: int) -> None:
    """Keep the header, ``rows`` rows and ``cut_into_next`` bytes of the next one."""
    data = path.read_bytes()
    pos = data.index(b"\r\n") + 2
    for _ in range(rows):
        pos = data.index(b"\r\n", pos) + 2
    path.write_bytes(data[: pos + cut_into_next])


@pytest.mark.parametrize("cut", [0, 7])
def test_resume_continues_an_interrupted_csv(tmp_path: Path, cut: int) -> None:
    src = write_csv(tmp_path / "in.csv", _many_rows(500))
    full = run(tmp_path, src, out_name="full.csv", chunk_size=50)
    out = tmp_path / "part.csv"
    out.write_bytes((tmp_path / "full.csv").read_bytes())
    _truncate_after_rows(out, 180, cut)
    FakePipeline.calls = 0
    resumed = run(tmp_path, src, out_name="part.csv", resume=True, chunk_size=50)
    assert out.read_bytes() == (tmp_path / "full.csv").read_bytes()
    assert resumed.resumed_rows == 180 and resumed.rows == 500
    assert resumed.to_dict()["by_month"] == full.to_dict()["by_month"]
    assert resumed.errors == full.errors
    assert FakePipeline.calls == 7  # only the 320 remaining rows were classified


def test_resume_of_a_finished_run_does_nothing(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", _many_rows(50))
    run(tmp_path, src)
    before = (tmp_path / "out.csv").read_bytes()
    FakePipeline.calls = 0
    summary = run(tmp_path, src, resume=True)
    assert FakePipeline.calls == 0 and summary.resumed_rows == 50
    assert (tmp_path / "out.csv").read_bytes() == before


def test_resume_refuses_an_output_of_another_input(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", _many_rows(10))
    (tmp_path / "out.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="other columns"):
        run(tmp_path, src, resume=True)


def test_resume_xlsx_output(tmp_path: Path) -> None:
    import openpyxl

    src = write_csv(tmp_path / "in.csv", _many_rows(120))
    run(tmp_path, src, out_name="full.xlsx", chunk_size=25)
    # An interrupted XLSX run leaves its CSV checkpoint beside the output.
    run(tmp_path, src, out_name="full.csv", chunk_size=25, output_encoding="utf-8")
    partial = tmp_path / "out.xlsx.partial.csv"
    partial.write_bytes((tmp_path / "full.csv").read_bytes())
    _truncate_after_rows(partial, 60, 3)
    summary = run(tmp_path, src, out_name="out.xlsx", resume=True, chunk_size=25)
    assert summary.resumed_rows == 60 and summary.rows == 120
    assert not partial.exists()

    def values(name: str) -> list[tuple[Any, ...]]:
        wb = openpyxl.load_workbook(tmp_path / name, read_only=True)
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
        wb.close()
        return rows

    assert values("out.xlsx") == values("full.xlsx")
    again = run(tmp_path, src, out_name="out.xlsx", resume=True)
    assert again.resumed_rows == 120 and values("out.xlsx") == values("full.xlsx")


def test_report_files(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", _many_rows(300))
    summary = run(tmp_path, src, report=tmp_path / "rep")
    names = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert names == ["by_department.png", "by_issue_type.png", "by_month.png", "pivot.csv",
                     "summary.json"]  # fmt: skip
    for png in (tmp_path / "rep").glob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "rep" / "pivot.csv", encoding="utf-8-sig", newline="") as fh:
        pivot = list(csv.reader(fh))
    assert pivot[0] == ["issue_type", "department", *[f"2019-{m:02d}" for m in range(1, 13)],
                        "total"]  # fmt: skip
    assert pivot[-1][0] == "total" and int(pivot[-1][-1]) == summary.ok == 180
    assert sum(int(r[-1]) for r in pivot[1:-1]) == 180
    data = json.loads((tmp_path / "rep" / "summary.json").read_text(encoding="utf-8"))
    assert data["rows"] == 300 and data["errors_by_reason"] == {"empty_text": 60, "no_chinese": 60}
    assert data["by_department"]["住房和城乡建设局"] == 60


def test_report_without_date_column(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [["text"], ["征地"], ["物业"]])
    run(tmp_path, src, report=tmp_path / "rep")
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert "by_month.png" not in names and "by_department.png" in names


@pytest.mark.parametrize(
    ("value", "month"),
    [
        ("2019/1/11 15:38:49", "2019-01"),
        ("2019-12-03", "2019-12"),
        ("2020年3月5日", "2020-03"),
        ("20180704", "2018-07"),
        (datetime(2021, 7, 1, 8), "2021-07"),
        ("昨天", None),
        ("", None),
        ("2019-13-01", None),
    ],
)
def test_month_of(value: Any, month: str | None) -> None:
    assert month_of(value) == month


def test_rows_stream_in_bounded_memory(tmp_path: Path) -> None:
    """Reading does not materialise the file: the first row arrives before the last is read."""
    src = write_csv(tmp_path / "in.csv", _many_rows(20_000))
    source = open_source(src)
    rows: Iterator[bulk.SourceRow] = source.rows()
    first = next(rows)
    assert first.values[0] == "0"
    assert source._lines.lineno < 100  # type: ignore[attr-defined]
    source.close()
