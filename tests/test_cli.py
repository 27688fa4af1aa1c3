"""The installed ``triage`` command: train, evaluate, predict, bad input and exit codes."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRIAGE = shutil.which("triage")
pytestmark = pytest.mark.skipif(
    TRIAGE is None, reason="the triage command is not installed (pip install -e .)"
)


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TRIAGE, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )  # type: ignore[list-item]


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's written examples, with Chinese headers, saved as GB18030."""
    rows = []
    for path in sorted((ROOT / "data" / "examples").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            rows.extend(csv.DictReader(fh))
    out = tmp_path_factory.mktemp("cli") / "labelled_gb18030.csv"
    with out.open("w", encoding="gb18030", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["标题", "信访内容", "label"])
        for r in rows:
            w.writerow([r["title"], r["text"], r["label"]])
    return out


@pytest.fixture(scope="module")
def trained(train_csv: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = train_csv.parent / "model"
    done = run("train", "--data", str(train_csv), "--out", str(out), "--folds", "2")
    return out, done


def test_train_prints_cv_metrics_and_writes_provenance(
    trained: tuple[Path, subprocess.CompletedProcess[str]], train_csv: Path
) -> None:
    out, done = trained
    assert done.returncode == 0, done.stderr
    assert "macro-F1" in done.stdout and "mining" in done.stdout
    meta = json.loads((out / "metadata.json").read_text("utf-8"))
    assert meta["training_data"]["rows_used"] > 400
    assert len(meta["training_data"]["sha256"]) == 64
    assert meta["cv_metrics"]["macro_f1"] > 0.5
    assert meta["segmenter"] in ("rjieba", "jieba")


def test_predict_json(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = trained
    text = "我們村幾十戶村民聯名反映，鎮上徵地補償款至今未發放到位，要求儘快兌現。"
    done = run("predict", "--model", str(out), "--received", "2026-11-21", text)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["label"] == "land_acquisition"
    assert len(result["candidates"]) == 3
    assert result["deadlines"]["acknowledge_by"] == "2026-12-06"
    assert result["route"] in {"none", "agri", "forestry", "litigation", "discipline"}
    assert "collective" in [f["id"] for f in result["flags"]]


def test_evaluate_with_report(
    trained: tuple[Path, subprocess.CompletedProcess[str]], train_csv: Path, tmp_path: Path
) -> None:
    out, _ = trained
    done = run(
        "evaluate", "--model", str(out), "--data", str(train_csv), "--report", str(tmp_path / "rep")
    )
    assert done.returncode == 0, done.stderr
    assert "macro-F1" in done.stdout and "confusion matrix" in done.stdout
    assert (tmp_path / "rep" / "confusion_matrix.png").stat().st_size > 1000
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text("utf-8"))["n"] > 400


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--data", "nope.csv", "--out", "x"], "no such file"),
        (["predict", "--model", "does/not/exist", "征地补偿"], "not found"),
    ],
)
def test_bad_input_one_line_error(args: list[str], needle: str) -> None:
    done = run(*args)
    assert done.returncode != 0
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_column(train_csv: Path, tmp_path: Path) -> None:
    done = run(
        "train", "--data", str(train_csv), "--text-col", "正文", "--out", str(tmp_path / "m")
    )
    assert done.returncode == 2
    assert "no text column '正文'" in done.stderr and "Traceback" not in done.stderr


def test_predict_rejects_empty_and_non_chinese(
    trained: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = trained
    for text in ("   ", "hello world, no Chinese here"):
        done = run("predict", "--model", str(out), text)
        assert done.returncode == 2
        assert "error" in done.stderr and "Traceback" not in done.stderr


def test_predict_finds_repeat_in_history(
    trained: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    from triage.store import Store

    out, _ = trained
    letter = (
        "我们村的耕地被镇里征收三年了，每亩补偿款只发了一半，剩余款项去向不明，请求查清并补发。"
    )
    store = Store(f"sqlite:///{tmp_path / 'history.sqlite3'}")
    case_id = store.add_case(
        text=letter,
        title="",
        label="land_acquisition",
        confidence=0.9,
        department="x",
        route="none",
        flags=[],
        priority="normal",
        received_at=None,
        channel="网上",
        region=None,
        model_version="t",
    )
    again = "我再次反映：" + letter.replace("，", " ")
    done = run(
        "predict", "--model", str(out), "--history", str(tmp_path / "history.sqlite3"), again
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["similar_cases"][0]["case_id"] == case_id
    assert "repeat" in [f["id"] for f in result["flags"]]
    missing = run("predict", "--model", str(out), "--history", str(tmp_path / "nope.db"), again)
    assert missing.returncode == 2 and "no such history database" in missing.stderr
