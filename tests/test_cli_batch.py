"""``triage batch`` as a command: exit codes, one-line errors, the printed summary.

Most tests run the CLI in-process with a fake pipeline (fast); ``test_real_model_*`` run
``python -m triage`` in a subprocess on a tiny model trained from fixture rows, so the
command is checked end to end without ../shared.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from triage import bulk
from triage.cli import main

ROOT = Path(__file__).resolve().parent.parent


class _Result:
    def __init__(self, text: str) -> None:
        self.label = "land_acquisition" if "征地" in text else "urban_housing"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "label_name": "征地拆迁补偿" if self.label == "land_acquisition" else "住房与城乡建设",
            "confidence": 0.7,
            "candidates": [{"label": self.label, "name": "", "probability": 0.7}],
            "needs_review": False,
            "department": "部门",
            "route": "none",
            "disposition": "受理",
            "flags": [],
            "priority": "normal",
        }


class _Pipeline:
    def classify_many(self, items: list[Any], max_length: int | None = None) -> list[_Result]:
        return [_Result(item.text) for item in items]


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the model loader (workers are forked, so they see the patch too)."""
    monkeypatch.setattr(bulk, "load_pipeline", lambda model=None, routing=None: _Pipeline())


def _csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


GOOD = [["id", "信访内容"], ["1", "征地补偿款没有到位"], ["2", "小区物业乱收费"]]


def test_all_rows_ok_exits_0_and_prints_a_summary(
    tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _csv(tmp_path / "in.csv", GOOD, "gb18030")
    code = main(["batch", "--input", str(src), "--output", str(tmp_path / "out.csv"),
                 "--no-progress", "--report", str(tmp_path / "rep")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "2 rows: 2 classified, 0 errors" in out
    assert "征地拆迁补偿" in out and "住房与城乡建设" in out
    assert [r["pred_label"] for r in _read(tmp_path / "out.csv")] == [
        "land_acquisition", "urban_housing",
    ]  # fmt: skip
    assert (tmp_path / "rep" / "by_department.png").exists()


def test_some_row_errors_exit_1(
    tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _csv(tmp_path / "in.csv", [*GOOD, ["3", ""], ["4", "only English"]])
    code = main(["batch", "--input", str(src), "--output", str(tmp_path / "out.xlsx"),
                 "--no-progress", "--jobs", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "errors by reason: empty_text 1, no_chinese 1" in out
    assert (tmp_path / "out.xlsx").exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: _csv(p / "in.csv", [["id", "备注"], ["1", "x"]]), "no text column"),
        (lambda p: p / "missing.csv", "no such file"),
        (lambda p: (p / "in.xlsx").write_bytes(b"PK\x03\x04broken") and p / "in.xlsx",
         "not a readable XLSX"),
    ],
)  # fmt: skip
def test_job_that_cannot_proceed_exits_2_with_one_line(
    tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str], setup: Any,
    message: str,
) -> None:  # fmt: skip
    src = setup(tmp_path)
    code = main(["batch", "--input", str(src), "--output", str(tmp_path / "out.csv"),
                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("triage batch: error: ") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()


def test_explicit_columns_and_sheet_flags(tmp_path: Path, fake_model: None) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "数据"
    ws.append(["摘要", "主题词"])
    ws.append(["钱没到位", "征地"])
    wb.create_sheet("其他").append(["x"])
    wb.save(tmp_path / "in.xlsx")
    code = main(["batch", "--input", str(tmp_path / "in.xlsx"), "--output",
                 str(tmp_path / "out.csv"), "--sheet", "数据", "--text-col", "摘要",
                 "--title-col", "主题词", "--no-progress"])  # fmt: skip
    assert code == 0
    assert _read(tmp_path / "out.csv")[0]["pred_label"] == "urban_housing"  # title is not text


def test_resume_flag(tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path / "in.csv", [GOOD[0]] + [[str(i), "征地"] for i in range(10)])
    args = ["batch", "--input", str(src), "--output", str(tmp_path / "out.csv"), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "10 rows were in the output already (resumed)" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# End to end with a real (tiny) model
# --------------------------------------------------------------------------------------------


def _have_real_pipeline() -> bool:
    try:
        import triage.model
        import triage.pipeline  # noqa: F401
    except ImportError:
        return False
    return True


real = pytest.mark.skipif(not _have_real_pipeline(), reason="triage.pipeline not built yet")

TRAIN_TEXTS = {
    "land_acquisition": [
        "村里土地被征收，征地补偿款至今没有发放",
        "拆迁安置房迟迟不交付，补偿标准太低",
        "征地没有公告就强行施工，失地农民没有安置",
        "国有土地上房屋征收补偿不合理",
    ],
    "urban_housing": [
        "小区物业乱收费，电梯长期停运",
        "开发商延期交房两年，业主维权无门",
        "小区下水道堵塞，污水横流无人管",
        "路灯不亮，市政道路坑洼不平",
    ],
    "labor_social_security": [
        "公司拖欠工资三个月不发",
        "单位不给缴纳社保，劳动合同到期不续签",
        "退休待遇计算有误，养老金偏低",
        "农民工工资被包工头拖欠",
    ],
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained by ``triage train`` on a few fixture rows (seconds, not minutes)."""
    base = tmp_path_factory.mktemp("tiny")
    rows = [["title", "text", "label"]]
    for label, texts in TRAIN_TEXTS.items():
        for i in range(6):
            for text in texts:
                rows.append(["", f"{text}（第{i}次反映）", label])
    data = _csv(base / "train.csv", rows)
    out = base / "model"
    proc = subprocess.run(
        [sys.executable, "-m", "triage", "train", "--data", str(data), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@real
def test_real_model_end_to_end(tmp_path: Path, tiny_model: Path) -> None:
    rows = [
        ["编号", "留言主题", "留言详情", "留言时间"],
        ["1", "补偿款", "我们村去年被征地，补偿款到现在都没有发", "2019/1/11 15:38:49"],
        ["2", "", "小区物业不作为，电梯坏了半年", "2019/2/1"],
        ["3", "", "", "2019/2/1"],
        ["4", "", "Hello, this is not Chinese", "2019/2/2"],
        ["5", "", "征地" * 30_000, "2019/3/2"],
    ]
    src = _csv(tmp_path / "in.csv", rows, "gb18030")
    proc = subprocess.run(
        [sys.executable, "-m", "triage", "batch", "--model", str(tiny_model), "--input",
         str(src), "--output", str(tmp_path / "out.csv"), "--jobs", "2", "--no-progress",
         "--report", str(tmp_path / "rep")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = _read(tmp_path / "out.csv")
    assert [r["编号"] for r in out] == ["1", "2", "3", "4", "5"]
    assert list(out[0]) == [*rows[0], *bulk.PRED_COLUMNS]
    assert out[0]["pred_label"] == "land_acquisition" and out[0]["pred_status"] == "ok"
    assert out[1]["pred_label"] == "urban_housing"
    assert 0 < float(out[0]["pred_confidence"]) <= 1
    assert out[0]["pred_top3"].count(":") == 3
    assert out[0]["pred_route"] in ("none", "agri", "forestry", "litigation", "discipline")
    assert out[0]["pred_disposition"] in ("受理", "转送", "告知")
    assert out[0]["pred_needs_review"] in ("true", "false")
    assert [r["pred_error"].split(":")[0] for r in out[2:]] == [
        "empty_text", "no_chinese", "text_too_long",
    ]  # fmt: skip
    assert "5 rows: 2 classified, 3 errors" in proc.stdout
    assert (tmp_path / "rep" / "by_month.png").exists()


@real
def test_real_model_missing_model_is_one_line_error(tmp_path: Path) -> None:
    src = _csv(tmp_path / "in.csv", GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "triage", "batch", "--model", str(tmp_path / "nowhere"),
         "--input", str(src), "--output", str(tmp_path / "out.csv"), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert proc.returncode in (2, 4)  # 2: no such folder, 4: not a usable model
    assert proc.stderr.startswith("triage batch: error:") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()


@real
def test_real_model_interrupt_then_resume(tmp_path: Path, tiny_model: Path) -> None:
    """Ctrl-C in the middle of a two-worker run, then --resume: every row exactly once."""
    import signal
    import time

    texts = [t for group in TRAIN_TEXTS.values() for t in group]
    rows = [["id", "text"]] + [[str(i), f"{texts[i % len(texts)]}{i}"] for i in range(6_000)]
    src = _csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    cmd = [
        sys.executable,
        "-m",
        "triage",
        "batch",
        "--model",
        str(tiny_model),
        "--input",
        str(src),
        "--output",
        str(out),
        "--jobs",
        "2",
        "--chunk-size",
        "50",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Started from a background shell, SIGINT would be ignored (and inherited as such).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while (not out.exists() or out.stat().st_size < 20_000) and proc.poll() is None:
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
    assert proc.returncode == 130, err
    assert "--resume" in err
    partial = len(_read(out))
    assert 0 < partial < 6_000
    done = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{partial:,} rows were in the output already" in done.stdout
    result = _read(out)
    assert [r["id"] for r in result] == [str(i) for i in range(6_000)]
    assert all(r["pred_status"] == "ok" and r["pred_label"] for r in result)


@real
def test_notebook_runs_on_fixture_data(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """notebooks/analyst_walkthrough.py executes top to bottom (jupytext + nbclient)."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    rows = [["id", "title", "text", "label", "留言时间"]]
    for label, texts in TRAIN_TEXTS.items():
        for i, text in enumerate(texts):
            rows.append(
                [f"{label}-{i}", "", f"A{i}县{text}，请尽快处理", label, f"2019-0{i + 1}-03"]
            )
    sample = _csv(tmp_path / "sample.csv", rows)
    monkeypatch.setenv("TRIAGE_NB_ROOT", str(ROOT))
    monkeypatch.setenv("TRIAGE_NB_MODEL", str(tiny_model))
    monkeypatch.setenv("TRIAGE_NB_SAMPLE", str(sample))
    monkeypatch.setenv("TRIAGE_NB_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notebook = jupytext.read(ROOT / "notebooks" / "analyst_walkthrough.py")
    assert all(not cell.get("outputs") for cell in notebook.cells)  # stored without outputs
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute()
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        for out in cell.get("outputs", [])
    )
    assert "version:" in text and "land_acquisition" in text
    assert "12 rows: 12 classified" in text
    assert "macro" in text.lower()
    assert (tmp_path / "work" / "evaluation" / "metrics.json").exists()
    assert (tmp_path / "work" / "batch_report" / "by_month.png").exists()
