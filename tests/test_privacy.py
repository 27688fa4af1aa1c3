"""Masking of personal numbers before storage and logging."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from triage.privacy import mask_personal_data


def test_masks_id_phone_card_landline() -> None:
    text = "电话13912345678，身份证43010219900101123X，卡号6222021234567890123，座机0731-88889999"
    out = mask_personal_data(text)
    for secret in ("13912345678", "43010219900101123X", "6222021234567890123", "88889999"):
        assert secret not in out
    assert "139****5678" in out
    assert "430102********123X" in out


def test_keeps_dates_counts_and_hotlines() -> None:
    text = "2019年12月1日，30余名村民拨打12336，补偿款20000元"
    assert mask_personal_data(text) == text


def test_phone_followed_by_date_is_not_a_card() -> None:
    out = mask_personal_data("座机0731-88889999 2019年")
    assert "2019年" in out


def _mask_without_prefilter(text: str) -> str:
    from triage import privacy

    text = privacy._ID_CARD.sub(lambda m: m.group(1) + "*" * 8 + m.group(3)[-4:], text)
    text = privacy._LANDLINE.sub(lambda m: m.group(1) + "-****" + m.group(2)[-2:], text)
    text = privacy._MOBILE.sub(lambda m: m.group(1) + "****" + m.group(3), text)
    return privacy._BANK_CARD.sub(privacy._mask_card, text)


@given(st.text(alphabet="0123456789 -+X号码电话卡，１２", max_size=60))
@settings(max_examples=500, deadline=None)
def test_prefilter_never_skips_a_number(text: str) -> None:
    """The one-scan prefilter only skips texts that none of the patterns would change."""
    assert mask_personal_data(text) == _mask_without_prefilter(text)
