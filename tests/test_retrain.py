"""triage.retrain: merging corrections, label checks, the held-out split, the registry
operations and the champion/challenger loop end to end (tiny data, no ../shared)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from triage.errors import DataFileError, InputError
from triage.registry import current_version, list_versions
from triage.retrain import (
    Example,
    RetrainOptions,
    RetrainResult,
    check_labels,
    format_result,
    held_out_split,
    load_base,
    load_feedback,
    merge_examples,
    retrain,
)
from triage.store import Store


def _csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _ex(text: str, label: str, source: str = "base", title: str = "") -> Example:
    return Example(text, title, label, source)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def test_load_base_counts_what_it_leaves_out(tmp_path: Path) -> None:
    src = tmp_path / "base.csv"
    src.write_bytes(
        "标题,信访内容,类别\n,征地补偿没到位,land_acquisition\n,小区物业乱收费,\n"
        ",, urban_housing\n,拖欠工资,  labor_social_security \n".encode("gb18030")
    )
    result = RetrainResult()
    examples = load_base(src, result=result)
    assert [(e.text, e.label) for e in examples] == [
        ("征地补偿没到位", "land_acquisition"),
        ("拖欠工资", "labor_social_security"),
    ]
    assert result.base_rows == 4
    assert result.base_blank_label == 1 and result.base_empty_text == 1


def test_load_base_without_label_column(tmp_path: Path) -> None:
    src = _csv(tmp_path / "base.csv", [["text", "note"], ["征地", "x"]])
    with pytest.raises(DataFileError, match=r"no label column.*--label-col"):
        load_base(src)
    with pytest.raises(DataFileError, match="no column 'cat'"):
        load_base(src, label_col="cat")


def test_merge_latest_correction_wins_and_duplicates_go() -> None:
    base = [
        _ex("征地补偿款没有发放。", "land_acquisition"),
        _ex("征地补偿款没有发放 。", "land_title_dispute"),  # same after normalisation
        _ex("小区物业乱收费", "urban_housing"),
        _ex("ＡＢＣ小区噪音", "urban_housing"),
    ]
    corrections = [
        _ex("小区物业乱收费", "commerce_tourism", "feedback", title="物业"),
        _ex("新的案件，基本农田上建厂", "land_illegal_use", "feedback"),
    ]
    result = RetrainResult()
    merged = merge_examples(base, corrections, result)
    by_text = {e.text: e for e in merged}
    assert len(merged) == 4
    assert by_text["征地补偿款没有发放。"].label == "land_acquisition"  # first base row kept
    assert by_text["小区物业乱收费"].label == "commerce_tourism"  # correction beats base
    assert by_text["小区物业乱收费"].model_input == "物业\n小区物业乱收费"
    assert result.duplicates_removed == 2 and result.duplicate_conflicts == 1
    assert result.corrections_overriding_base == 1
    assert result.training_rows == 4
    assert result.label_counts["urban_housing"] == 1


def test_new_labels_need_enough_examples_and_a_routing_entry() -> None:
    examples = [_ex(f"a{i}", "urban_housing") for i in range(5)]
    examples += [_ex(f"b{i}", "county_grain", "feedback") for i in range(3)]
    result = RetrainResult()
    problems = check_labels(examples, {"urban_housing"}, 5, {"urban_housing"}, result)
    assert result.new_labels == {"county_grain": 3}
    assert "'county_grain'" in problems[0] and "3 example(s)" in problems[0]
    assert "2 more" in problems[0]
    assert "routing" in problems[1] and "county_grain" in problems[1]
    examples += [_ex(f"c{i}", "county_grain", "feedback") for i in range(2)]
    known = {"urban_housing", "county_grain"}
    assert check_labels(examples, {"urban_housing"}, 5, known) == []
    assert "at least 2 labels" in check_labels(examples[:5], {"urban_housing"}, 5, None)[0]


def test_held_out_split_is_stratified_and_keeps_rare_labels_in_training() -> None:
    labels = ["a"] * 50 + ["b"] * 10 + ["c"] * 2 + ["d"]
    train, test = held_out_split(labels, 0.2, seed=1)
    assert sorted(train + test) == list(range(len(labels)))
    tested = [labels[i] for i in test]
    assert tested.count("a") == 10 and tested.count("b") == 2 and tested.count("c") == 1
    assert "d" not in tested and "d" in [labels[i] for i in train]
    assert held_out_split(labels, 0.2, seed=1) == (train, test)  # reproducible


def test_load_feedback_skips_and_reports_unknown_cases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    store = Store(url)
    common = {"confidence": 0.5, "label": "urban_housing"}
    a = store.add_case(text="村里征地款没发", **common)
    b = store.add_case(text="物业乱收费", **common)
    store.add_case(text="没人纠正的案件", **common)
    store.add_feedback(a, "land_title_dispute")
    store.add_feedback(a, "land_acquisition")  # the latest wins
    store.add_feedback(b, "commerce_tourism")
    store.close()
    # A correction whose case is gone (written without foreign-key checks, as an old import).
    with sqlite3.connect(tmp_path / "cases.sqlite3") as conn:
        conn.execute(
            "INSERT INTO feedback (case_id, label, created_at)"
            " VALUES ('ghost', 'mining', '2024-01-01')"
        )
    result = RetrainResult()
    examples = load_feedback(url, result)
    assert sorted((e.text, e.label) for e in examples) == [
        ("村里征地款没发", "land_acquisition"),
        ("物业乱收费", "commerce_tourism"),
    ]
    assert result.feedback_corrections == 2
    assert result.feedback_unknown_cases == ["ghost"]
    assert "ghost" in format_result(_finished(result))


def _finished(result: RetrainResult) -> RetrainResult:
    result.challenger, result.challenger_macro_f1, result.challenger_accuracy = "v1", 0.9, 0.9
    return result


# --------------------------------------------------------------------------------------------
# Registry operations
# --------------------------------------------------------------------------------------------


def _version(models: Path, name: str, created: str) -> None:
    (models / name).mkdir(parents=True)
    meta = {"created_at": created, "labels": ["a", "b"], "metrics": {"macro_f1": 0.9}}
    (models / name / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")


def test_models_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from triage.cli import main

    models = tmp_path / "models"
    _version(models, "20240101-000000", "2024-01-01T00:00:00")
    _version(models, "20240201-000000", "2024-02-01T00:00:00")
    base = ["models", "--models-dir", str(models)]
    assert main([*base, "promote", "20240101-000000"]) == 0
    assert main([*base, "promote", "20240201-000000"]) == 0
    capsys.readouterr()
    assert main([*base, "list"]) == 0
    out = capsys.readouterr().out
    assert "* 20240201-000000" in out and "  20240101-000000" in out and "0.9000" in out
    assert main([*base, "rollback"]) == 0
    assert "current version: 20240101-000000" in capsys.readouterr().out
    assert main([*base, "rollback"]) == 2  # nothing before it
    assert "nothing to roll back" in capsys.readouterr().err
    assert main([*base, "promote", "nope"]) == 2
    assert "no model version 'nope'" in capsys.readouterr().err
    assert main([*base, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["current"] for v in listed] == [True, False]


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _have_model() -> bool:
    try:
        import triage.model
        import triage.registry  # noqa: F401
    except ImportError:
        return False
    return True


real = pytest.mark.skipif(not _have_model(), reason="triage.model/registry not built yet")

PHRASES = {
    "land_acquisition": [
        "征地补偿款没有发放",
        "拆迁安置房不交付",
        "征收土地没有公告",
        "失地农民没有安置",
    ],
    "urban_housing": ["小区物业乱收费", "开发商延期交房", "电梯长期停运", "下水道堵塞没人管"],
    "labor_social_security": ["公司拖欠工资", "单位不交社保", "养老金计算有误", "劳动合同不续签"],
}
PLACES = ["A市", "B县", "C2区", "D镇", "E村", "F街道", "G乡", "H社区"]


def _base_rows(n_per_label: int, labels: dict[str, list[str]] = PHRASES) -> list[list[str]]:
    rows = [["title", "text", "label"]]
    for label, phrases in labels.items():
        for i in range(n_per_label):
            place = PLACES[i % len(PLACES)]
            rows.append(["", f"{place}{phrases[i % 4]}，第{i}次反映，请尽快处理", label])
    return rows


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@real
def test_retrain_promotes_first_challenger_then_keeps_champion_when_worse(
    tmp_path: Path, models_dir: Path
) -> None:
    base = _csv(tmp_path / "base.csv", _base_rows(20))
    first = retrain(RetrainOptions(base=base, out=models_dir, champion=None, seed=3,
                                   make_estimator=None))  # fmt: skip
    assert first.promoted
    assert current_version(models_dir) == first.challenger
    assert (models_dir / first.challenger / "metadata.json").exists()
    assert json.loads((models_dir / first.challenger / "retrain.json").read_text())["promoted"]
    assert (models_dir / first.challenger / "held_out" / "confusion_matrix.png").exists()

    # A challenger that only ever predicts one label is far worse: the champion stays.
    def dumb(_champion: Any) -> Any:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy="most_frequent")

    second = retrain(RetrainOptions(base=base, out=models_dir, margin=0.01, make_estimator=dumb))
    assert not second.promoted
    assert second.champion == first.challenger
    assert "kept the champion" in second.reason and "more than the margin 0.01" in second.reason
    assert current_version(models_dir) == first.challenger
    assert [v["version"] for v in list_versions(models_dir)] == [
        first.challenger,
        second.challenger,
    ]
    text = format_result(second)
    assert "NOT PROMOTED" in text and first.challenger in text


@real
def test_retrain_with_feedback_and_new_label(tmp_path: Path, models_dir: Path) -> None:
    base_rows = _base_rows(15)
    base_rows.append(["", "", ""])  # a blank row
    base_rows.append(["", "有标签缺失的一行", ""])
    base = _csv(tmp_path / "base.csv", base_rows)
    url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    store = Store(url)
    for i in range(6):
        case = store.add_case(text=f"{PLACES[i]}有人非法采矿，山体塌陷{i}", label="urban_housing",
                              confidence=0.4)  # fmt: skip
        store.add_feedback(case, "mining")
    store.close()

    with pytest.raises(InputError, match=r"new label 'mining'.*6 example\(s\).*10 are needed"):
        retrain(RetrainOptions(base=base, out=models_dir, feedback_db=url, min_examples=10))
    assert not models_dir.exists() or not list_versions(models_dir)  # nothing trained

    result = retrain(
        RetrainOptions(base=base, out=models_dir, feedback_db=url, min_examples=5, seed=0)
    )
    assert result.new_labels == {"mining": 6}
    assert result.base_blank_label == 2 and result.feedback_corrections == 6
    assert result.training_rows == 45 + 6
    assert "mining" in result.per_class_f1
    assert "left out of training" in format_result(result)
    assert "nothing is lost" in format_result(result)


@real
def test_retrain_cli(tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from triage.cli import main

    base = _csv(tmp_path / "base.csv", _base_rows(12))
    assert main(["retrain", "--base", str(base), "--out", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert "PROMOTED" in out and "held-out split" in out
    code = main(["retrain", "--base", str(tmp_path / "missing.csv"), "--out", str(models_dir)])
    assert code == 2 and "no such file" in capsys.readouterr().err
