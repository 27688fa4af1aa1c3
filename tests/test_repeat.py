"""Tests of the repeat-petition index (synthetic petitions written for these tests)."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.normalize import normalize
from triage.repeat import DEFAULT_THRESHOLD, RepeatIndex, canonical, shingle_hashes

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"

# Invented petitions in the de-identified style of the real ones (A市, B2区 …).
NOISE = (
    "B2区青松路福安小区楼下的烧烤店每天营业到凌晨三点,油烟直接排到居民窗户里,噪音也很大,"
    "老人和孩子晚上根本睡不着。我们向街道和城管反映过多次,每次来人看一眼就走了,"
    "店主说他有营业执照谁也管不了。请有关部门依法查处,还居民一个安静的环境。"
)
WAGES = (
    "A市宏达建筑公司拖欠我们三十二名农民工的工资共计486,000元,工程在2019年05月已经完工验收,"
    "老板一直以甲方没有结算为由拒绝支付。我们多次到劳动监察大队投诉,至今没有结果,"
    "快过年了大家都等着这笔钱回家,恳请政府帮我们讨回血汗钱。联系电话13812345678。"
)
SCHOOL = (
    "C3县实验小学今年秋季招生划片不合理,我家住在学校围墙外两百米的翠湖花园,"
    "却被划到五公里外的城北小学,孩子每天上学要坐四十分钟公交车。同一个小区对面一栋楼的"
    "孩子却可以读实验小学,请教育局公开划片的依据并重新调整。"
)
ROAD = (
    "D市D4区长青镇到白沙村的乡村公路去年修好后不到半年就到处开裂,有的地方已经塌陷成大坑,"
    "下雨天摩托车经常摔倒。村民怀疑施工单位偷工减料,水泥标号不够,请交通局派人检测路面质量,"
    "追究施工单位和监理的责任,尽快把路修好。"
)
PENSION = (
    "我是E市纺织厂的退休职工,1988年参加工作,2018年退休,社保局核定的养老金比同厂同工龄的"
    "同事每月少了六百多元。我去社保局查询,工作人员说我的档案里有三年视同缴费年限没有认定,"
    "可是当年的招工表和工资条都在。请社保局重新核定我的缴费年限。"
)
# Same place and topic as NOISE, a different matter (a different shop and complaint).
NOISE_OTHER = (
    "B2区青松路福安小区门口新开的KTV每天晚上音响开得震天响,一直唱到凌晨,周围好几栋楼的"
    "居民都受到影响。小区业主群里大家都在抱怨,希望环保部门来测一下噪声是否超标,"
    "督促KTV做好隔音,晚上十点以后降低音量。"
)

PETITIONS = {
    "noise": NOISE,
    "wages": WAGES,
    "school": SCHOOL,
    "road": ROAD,
    "pension": PENSION,
    "noise_other": NOISE_OTHER,
}


def _index(**params: int | float) -> RepeatIndex:
    index = RepeatIndex(**params)  # type: ignore[arg-type]
    index.add_many((cid, normalize(text)) for cid, text in PETITIONS.items())
    return index


@lru_cache(maxsize=1)
def _s2t_converter() -> Any:
    import opencc

    return opencc.OpenCC("s2t")


def _s2t(text: str) -> str:
    return str(_s2t_converter().convert(text))


@pytest.fixture(scope="module")
def index() -> RepeatIndex:
    return _index()


def _top(index: RepeatIndex, text: str) -> str | None:
    hits = index.query(normalize(text))
    return hits[0][0] if hits else None


@pytest.mark.parametrize(
    ("case_id", "rewrite"),
    [
        # A preamble, and the complaint written again with other punctuation and spacing.
        ("noise", "我再次反映:" + NOISE.replace(",", " ").replace("。", "!!") + "至今没有解决!"),
        # Sentences in another order and one of them dropped.
        ("school", "".join(reversed(SCHOOL.split(",")[1:]))),
        # Cut short, as when a web form truncates the text.
        ("road", ROAD[: len(ROAD) * 2 // 3]),
        # Numbers written differently and the phone number masked (as the store does).
        (
            "wages",
            WAGES.replace("486,000", "486000")
            .replace("2019年05月", "2019年5月")
            .replace("13812345678", "138****5678"),
        ),
        # Full-width characters and a phrase inserted.
        ("pension", PENSION.replace("1988", "１９８８").replace("。", ",情况属实,")),
    ],
    ids=["preamble-punctuation", "reordered-cut", "truncated", "numbers-masked", "fullwidth"],
)
def test_rephrased_duplicates_are_found(index: RepeatIndex, case_id: str, rewrite: str) -> None:
    hits = index.query(normalize(rewrite))
    assert hits, "no match"
    assert hits[0][0] == case_id
    assert hits[0][1] >= DEFAULT_THRESHOLD


def test_traditional_characters_match_with_or_without_normalising(index: RepeatIndex) -> None:
    traditional = _s2t(PENSION)
    assert traditional != PENSION
    assert _top(index, traditional) == "pension"
    # The index is robust to text that skipped normalize() too.
    assert index.query(traditional)[0][0] == "pension"


def test_unrelated_and_same_topic_petitions_do_not_match(index: RepeatIndex) -> None:
    new = (
        "F市人民医院门诊楼的电梯经常坏,上周我陪母亲复查,电梯停了两个小时,"
        "八十岁的老人只能爬到六楼。请卫健委督促医院尽快维修更换电梯。"
    )
    assert index.query(normalize(new)) == []
    # The other complaint about the same compound is not a repeat of the first one.
    assert "noise" not in dict(index.query(normalize(NOISE_OTHER), k=5))
    assert index.similarity(NOISE, NOISE_OTHER) < DEFAULT_THRESHOLD


def test_results_are_best_first_and_respect_k_and_threshold(index: RepeatIndex) -> None:
    local = _index()
    local.add("noise_again", normalize("我再次反映:" + NOISE))
    local.add("noise_cut", normalize(NOISE[:60]))
    hits = local.query(normalize(NOISE), k=5)
    assert [c for c, _s in hits][:1] == ["noise"]
    sims = [s for _c, s in hits]
    assert sims == sorted(sims, reverse=True) and sims[0] == pytest.approx(1.0)
    assert len(local.query(normalize(NOISE), k=1)) == 1
    assert local.query(normalize(NOISE), k=0) == []
    assert all(s >= 0.99 for _c, s in local.query(normalize(NOISE), threshold=0.99))


def test_short_texts_only_match_identical_short_texts() -> None:
    index = _index()
    index.add("short", "物业不作为")
    index.add("short2", "物业不作为!")
    # A long petition containing the short text does not match it, and vice versa.
    assert "short" not in dict(index.query(normalize("物业不作为," + NOISE)))
    assert [c for c, _s in index.query("物业 不作为。")] == ["short", "short2"]
    assert index.query("物业") == []
    assert index.query("") == []
    assert index.query("。,!") == []


def test_remove_and_re_add() -> None:
    index = _index()
    assert len(index) == len(PETITIONS) and "road" in index
    assert index.remove("road") is True
    assert index.remove("road") is False
    assert "road" not in index and len(index) == len(PETITIONS) - 1
    assert _top(index, ROAD) is None
    # Re-adding an id replaces its text.
    index.add("wages", normalize(ROAD))
    assert _top(index, ROAD) == "wages"
    assert _top(index, WAGES) is None
    assert len(index) == len(PETITIONS) - 1


def test_many_single_adds_seal_and_merge_segments() -> None:
    rng = np.random.default_rng(0)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 2000)]
    texts = {f"c{i}": "".join(rng.choice(chars, size=60)) for i in range(50)}
    index = RepeatIndex(tail_size=4, merge_factor=2)
    for cid, text in texts.items():
        index.add(cid, text)
    index.remove("c7")
    assert len(index) == 49
    assert index.stats()["segments"] < 10  # merged, not one segment per four adds
    for cid, text in texts.items():
        hits = index.query(text, k=1)
        assert (hits[0][0] if hits else None) == (None if cid == "c7" else cid)


@pytest.mark.parametrize("removed", [(), ("c3",), ("c0", "c5", "c11", "c12")])
def test_merge_equals_rebuilding_the_merged_cases(removed: tuple[str, ...]) -> None:
    """The run-merging ``_Segment.merge`` builds exactly what indexing the surviving cases'
    shingles afresh builds (every array, bit for bit), with and without removed cases."""
    from triage.repeat import _gather, _Segment

    rng = np.random.default_rng(1)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 300)]  # few chars: shared shingles
    index = RepeatIndex(tail_size=4, merge_factor=1)  # each batch its own segment, unmerged
    index.add_many((f"c{i}", "".join(rng.choice(chars, size=80))) for i in range(8))
    index.add_many((f"c{i}", "".join(rng.choice(chars, size=50))) for i in range(8, 14))
    for case_id in removed:
        index.remove(case_id)
    segments = index._segments
    assert len(segments) == 2
    merged = _Segment.merge(segments, index._alive)
    gids, lengths, parts = [], [], []
    for seg in segments:
        rows = np.flatnonzero(index._alive[seg.gids])
        idx, lens = _gather(seg.fwd_ptr, rows)
        gids.append(seg.gids[rows])
        lengths.append(lens)
        parts.append(seg.fwd[idx])
    rebuilt = _Segment.from_forward(
        np.concatenate(gids),
        np.concatenate(([0], np.cumsum(np.concatenate(lengths)))),
        np.concatenate(parts),
    )
    assert len(merged) == 14 - len(removed)
    for field in _Segment.FIELDS:
        got, want = getattr(merged, field), getattr(rebuilt, field)
        assert got.dtype == want.dtype and np.array_equal(got, want), field


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index = _index(threshold=0.4, probes=32)
    index.add("short", "物业不作为")
    index.remove("school")
    path = tmp_path / "repeat.npz"
    index.save(path)
    loaded = RepeatIndex.load(path)
    assert len(loaded) == len(index) and "school" not in loaded and "short" in loaded
    assert (loaded.threshold, loaded.probes) == (0.4, 32)
    for text in [*PETITIONS.values(), "物业不作为", "我再次反映:" + NOISE]:
        assert loaded.query(normalize(text)) == index.query(normalize(text))
    loaded.add("new", normalize(SCHOOL))
    assert {c for c, _s in loaded.query(normalize(SCHOOL))} == {"new"}
    assert RepeatIndex.load(path, threshold=0.9).threshold == 0.9


def test_load_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, meta=np.frombuffer(b'{"version": 99}', np.uint8))
    with pytest.raises(ValueError, match="repeat index"):
        RepeatIndex.load(path)


def test_concurrent_queries_and_adds() -> None:
    index = RepeatIndex(tail_size=8, merge_factor=2)
    index.add_many((cid, normalize(t)) for cid, t in PETITIONS.items())
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                assert _top(index, WAGES) == "wages"
        except BaseException as exc:
            errors.append(exc)

    def writer(offset: int) -> None:
        try:
            for i in range(60):
                index.add(f"w{offset}-{i}", normalize(f"第{offset}组第{i}件:" + ROAD[i % 20 :]))
                if i % 3 == 0:
                    index.remove(f"w{offset}-{i}")
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for th in readers + writers:
        th.start()
    for th in writers:
        th.join()
    stop.set()
    for th in readers:
        th.join()
    assert not errors
    assert len(index) == len(PETITIONS) + 2 * 40
    assert all(c not in index for c in (f"w{n}-{i}" for n in range(2) for i in range(0, 60, 3)))


def test_canonical_form() -> None:
    assert canonical("A3区 北辰小区!!") == "a3区北辰小区"
    assert canonical("2019年05月,共12,000元") == canonical("2019年5月 共12000元")
    assert canonical("3棟") == canonical("三栋")
    assert canonical("电话13812345678") == canonical("电话138****5678") == "电话"
    assert canonical("") == ""
    assert len(shingle_hashes(canonical("一二三四五"))) == 3
    assert shingle_hashes("").size == 0


@pytest.mark.shared
def test_shared_data_edited_copies_are_found() -> None:
    """Edited copies of real petitions are found among 3,000 others (needs ../shared)."""
    if not (SHARED / "petitions13_train.csv").exists():
        pytest.skip("../shared/data is not available")
    import pandas as pd

    df = pd.read_csv(SHARED / "petitions13_train.csv", usecols=["title", "text"]).sample(
        3000, random_state=0
    )
    docs = [
        normalize(f"{t}。{x}" if isinstance(t, str) else str(x))
        for t, x in zip(df.title, df.text, strict=True)
    ]
    index = RepeatIndex()
    index.add_many((f"c{i}", d) for i, d in enumerate(docs))
    rng = np.random.default_rng(0)
    found = 0
    picks = rng.choice(len(docs), size=100, replace=False)
    for i in picks:
        edited = "我再次反映:" + docs[i][: max(30, len(docs[i]) * 3 // 4)].replace(",", " ")
        found += f"c{i}" in {c for c, _s in index.query(normalize(_s2t(edited)))}
    assert found >= 95


def test_bucket_lookup_equals_searchsorted() -> None:
    """The segment's hash-bucket lookup finds exactly the query shingles searchsorted finds."""
    from triage.repeat import _Segment

    rng = np.random.default_rng(7)
    for n in (1, 3, 1_000, 100_000):
        terms = np.unique(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32))
        terms[-1] = np.uint32(0xFFFFFFFF)  # the largest hash, equal to the walk's sentinel
        seg = _Segment(
            gids=np.zeros(0, dtype=np.int64),
            fwd_ptr=np.zeros(1, dtype=np.int64),
            fwd=np.zeros(0, dtype=np.uint32),
            terms=terms,
            ptr=np.arange(len(terms) + 1, dtype=np.int64),
            docs=np.zeros(len(terms), dtype=np.int32),
        )
        absent = rng.integers(0, 2**32, 300, dtype=np.uint64).astype(np.uint32)
        query = np.unique(np.concatenate([rng.choice(terms, min(60, len(terms))), absent]))
        pos = np.searchsorted(terms, query)
        inside = pos < len(terms)
        expected = pos[inside][terms[pos[inside]] == query[inside]]
        assert sorted(seg._find(query).tolist()) == sorted(expected.tolist())


def test_add_reuses_the_canonical_form_of_a_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service stores what it just classified: the add must not normalise it again."""
    import triage.repeat as repeat

    index = RepeatIndex()
    index.add_many([("w", WAGES), ("s", SCHOOL)])
    text = normalize(NOISE)
    assert index.query(text) == []
    seen: list[list[str]] = []
    real = repeat.canonical_many
    monkeypatch.setattr(
        repeat, "canonical_many", lambda texts: seen.append(list(texts)) or real(texts)
    )
    index.add("n", text)
    assert seen == [[]]  # nothing left to compute
    assert index.query(text)[0][0] == "n"


def test_cases_added_by_canonical_form_are_found_like_cases_added_by_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``add_canonical_many`` (a form stored beside the case) indexes exactly what ``add_many``
    of the text would, without computing any canonical form; ``canonical_of`` reuses and
    forgets the form a query computed."""
    import triage.repeat as repeat

    texts = {cid: normalize(text) for cid, text in PETITIONS.items()} | {"short": "占地"}
    by_text, by_form = RepeatIndex(tail_size=4), RepeatIndex(tail_size=4)
    by_text.add_many(texts.items())
    forms = [(cid, canonical(text)) for cid, text in texts.items()]
    computed: list[str] = []
    real = repeat.canonical
    monkeypatch.setattr(repeat, "canonical", lambda text: computed.append(text) or real(text))
    monkeypatch.setattr(repeat, "canonical_many", lambda texts: pytest.fail("normalised"))
    by_form.add_canonical_many(forms)
    assert computed == [] and len(by_form) == len(by_text) == len(texts)
    for text in [*texts.values(), normalize(NOISE + "谢谢。")]:
        assert by_form.query(text) == by_text.query(text)
    query = normalize(WAGES + "请尽快处理。")
    by_form.query(query)
    computed.clear()
    assert by_form.canonical_of(query) == real(query) and computed == []  # the query's form
    assert by_form.canonical_of(query) == real(query) and computed == [query]  # forgotten


def test_weak_candidates_are_not_verified() -> None:
    """A case sharing only a few of the query's rare shingles is not checked exactly."""
    index = RepeatIndex(min_probe_hits=0.2)
    # An indexed case that shares a place name (and nothing else) with the query.
    index.add_many([("w", normalize(WAGES)), ("s", normalize(SCHOOL + "B2区青松路福安小区"))])
    segment = index._segments[-1] if index._segments else index._tail_segment
    assert segment is not None
    query = shingle_hashes(canonical(normalize(NOISE)))
    assert len(segment.search(query, 64, 40, 0.0)[0]) > 0
    assert len(segment.search(query, 64, 40, 0.2)[0]) == 0


#: Characters where the canonical form's rules meet: digits and masks (personal numbers,
#: thousands separators, leading zeros), Chinese digits, traditional and full-width forms,
#: punctuation, whitespace, underscores, astral characters, the string path's private mark.
_CANON_ALPHABET = list("0123456789" * 3 + "***,,,，、。 \n\t_-") + list(
    "〇零一二三四五六七八九两棟訪設(shè)ＡＢ１２３ａbcXYZ征地补偿款元号年月😀𠀀\ue000"
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet=_CANON_ALPHABET, max_size=40), min_size=1, max_size=4))
def test_one_text_path_equals_the_array_path(texts: list[str]) -> None:
    """``canonical`` (string operations, one text) gives exactly what the vectorised path
    (``canonical_many``, used when indexing in bulk) gives, text by text."""
    from triage import repeat

    assert [canonical(t) for t in texts] == repeat.canonical_many(texts)


@pytest.mark.parametrize(
    "text",
    ["1,234,567元", "12,000元", "0005号", "1,2345", "01,234", "12,34,567", "00", "1*2",
     "x\ue0001,234", "a_b😀c", "零零七年"],
)  # fmt: skip
def test_one_text_path_on_number_formatting_edges(text: str) -> None:
    from triage import repeat

    assert canonical(text) == repeat.canonical_many([text])[0]
