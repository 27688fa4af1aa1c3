"""The whole triage of a petition through the Python API, on a real model."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from triage.errors import InputError, TextTooLongError
from triage.normalize import normalize
from triage.pipeline import PetitionInput, Triage, TriageResult, check_text
from triage.repeat import RepeatIndex


@pytest.fixture(scope="module")
def triage(real_model: Path) -> Triage:
    return Triage.load(model=real_model, repeat_index=RepeatIndex())


LETTER = (
    "尊敬的领导：我们是C2县白鹤镇新塘村三组全体村民，共二十多户。2019年镇政府征收我组耕地修建工业园，"
    "至今每亩征地补偿款只发了一半，剩下的钱被村里截留。多次找镇里无果，再不解决我们只能到省里上访。"
)


def test_full_result(triage: Triage) -> None:
    r = triage.classify(
        LETTER, title="征地补偿款被截留", received_at=date(2026, 11, 21), channel="来信"
    )
    assert isinstance(r, TriageResult)
    assert r.label == "land_acquisition" and r.label_name == "征地拆迁补偿"
    assert r.candidates[0].label == r.label and len(r.candidates) == 3
    assert r.department and r.disposition in {"受理", "转送", "告知"} and r.reason
    assert {"collective", "escalation"} <= set(r.flag_ids)
    assert r.priority == "high"
    assert r.deadlines.acknowledge_by == date(2026, 12, 6)
    assert r.deadlines.resolve_by == date(2027, 1, 20)
    d = r.to_dict()
    assert d["deadlines"]["extended_resolve_by"] == "2027-02-19"
    assert d["flags"][0]["evidence"]
    # The hand-written dict must stay what dataclasses.asdict gives (with ISO dates).
    import dataclasses
    import json

    reference = dataclasses.asdict(r)
    reference["flags"] = [dict(f, evidence=list(f["evidence"])) for f in reference["flags"]]
    assert json.loads(json.dumps(d)) == json.loads(json.dumps(reference, default=str))


def test_override_rule_beats_model(triage: Triage) -> None:
    text = (
        "我是出嫁女，村里在土地承包经营权确权时把我的承包地收回分给了别人，要求恢复我的承包地权益。"
    )
    r = triage.classify(text)
    assert r.route == "agri" and r.disposition == "转送"
    assert "agri" in r.reason or "农业" in r.department


def test_repeat_flag_from_index(triage: Triage) -> None:
    index = triage.repeat_index
    assert index is not None
    index.add("case-1", normalize(LETTER))
    rephrased = LETTER.replace("，", " ").replace("尊敬的领导：", "领导您好，我再次反映：")
    r = triage.classify(rephrased)
    assert "repeat" in r.flag_ids
    assert r.similar_cases[0].case_id == "case-1"
    index.remove("case-1")


def test_batch_keeps_order_and_reports_errors(triage: Triage) -> None:
    items = [
        PetitionInput(LETTER),
        PetitionInput("   "),
        "no chinese at all",
        PetitionInput("非法采砂"),
    ]
    out = triage.classify_many(items)
    assert len(out) == 4
    assert isinstance(out[0], TriageResult) and isinstance(out[3], TriageResult)
    assert isinstance(out[1], InputError) and "empty" in str(out[1])
    assert isinstance(out[2], InputError) and "Chinese" in str(out[2])


def test_check_text_limits() -> None:
    with pytest.raises(TextTooLongError):
        check_text("征" * 101, max_length=100)
    check_text("", title="只有标题的信访")  # a title alone is enough


def test_huge_text_is_fast(triage: Triage) -> None:
    import time

    text = ("村民反映征地补偿问题。" * 100_000)[:1_000_000]
    t0 = time.perf_counter()
    r = triage.classify(text)
    assert time.perf_counter() - t0 < 2.0  # the model reads the first few thousand characters
    assert r.label


def test_repeat_form_key_names_the_normalisation_and_canonical_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key is stable, and code that forms texts differently gets another key, so that
    forms it stored are not trusted by the other code (and the reverse)."""
    import triage.pipeline as pipeline

    key = pipeline.repeat_form_key()
    assert key == pipeline.repeat_form_key.__wrapped__()
    monkeypatch.setattr(pipeline, "prepare_text", lambda text, title="": text)  # no normalising
    assert pipeline.repeat_form_key.__wrapped__() != key
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "canonical", lambda text: text)
    assert pipeline.repeat_form_key.__wrapped__() != key


def test_repeat_index_from_store_uses_stored_forms(tmp_path: Path) -> None:
    from triage.pipeline import repeat_form, repeat_form_key, repeat_index_from_store
    from triage.store import CaseForm, Store

    url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    store = Store(url)
    text = "村里的耕地被人挖土卖钱，挖了十几米深的大坑，请国土部门查处违法采矿。"
    other = "小区物业擅自占用公共绿地建停车场，多次反映无人处理，要求恢复绿地。"
    row = {"text": text, "label": "mining", "confidence": 0.9}
    (stored,) = store.add_case_records(
        [row], form=CaseForm(repeat_form_key(), lambda title, body: repeat_form("", other))
    )
    (plain,) = store.add_case_records([row])
    store.close()
    index = repeat_index_from_store(url)
    assert [cid for cid, _ in index.query(normalize(other))] == [stored.id]
    assert [cid for cid, _ in index.query(normalize(text))] == [plain.id]
