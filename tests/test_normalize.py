"""Unit tests of triage.normalize: the nasty cases real exports contain."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triage.normalize import normalize, to_simplified


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("設(shè)立信訪(fǎng)辦公室", "设立信访办公室"),
        ("访(fang3)问", "访问"),
        ("我家房子_x000D_\n被拆了", "我家房子 被拆了"),
        ("补偿&amp;安置&nbsp;问题", "补偿&安置 问题"),
        ("<p>要求<b>补偿</b></p><br/>到位", "要求补偿 到位"),
        ("ＡＢＣ１２３，５人\u3000\u3000上访", "ABC123,5人 上访"),
        ("正文……(新文秘网https://www.wm114.cn省略814字，正式会员可完整阅读)……结尾", "正文结尾"),
        ("臺灣土地徵收補償", "台湾土地征收补偿"),
        ("  \t\n ", ""),
        ("", ""),
    ],
)
def test_normalize_cases(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_keeps_meaningful_digits_and_brackets() -> None:
    text = "2019年3月5日，30余名村民拨打12336反映(第2次)，微信(WeChat)群，a<b 5<6人"
    out = normalize(text)
    for kept in ("2019年3月5日", "30余名", "12336", "(第2次)", "微信(WeChat)", "a<b", "5<6人"):
        assert kept in out


def test_none_is_empty() -> None:
    assert normalize(None) == ""


def test_to_simplified() -> None:
    assert to_simplified("國土資源局") == "国土资源局"


@given(st.text(max_size=200))
def test_idempotent_and_total(text: str) -> None:
    once = normalize(text)
    assert isinstance(once, str)
    assert normalize(once) == once
