"""Segmentation: domain dictionary and stop words are data files, applied once."""

from __future__ import annotations

import pytest

from triage.segment import Segmenter, available_backends, load_stopwords, load_userdict


@pytest.mark.parametrize("backend", available_backends())
def test_domain_terms_stay_whole(backend: str) -> None:
    tokens = Segmenter(backend).tokens("我们村的宅基地被非法占用，要求办理不动产权证，已越级上访")
    for term in ("宅基地", "非法占用", "不动产权证", "越级上访"):
        assert term in tokens
    assert "的" not in tokens and "，" not in tokens


def test_data_files_parse() -> None:
    words = {w for w, _, _ in load_userdict()}
    assert {"征地补偿", "小产权房", "采矿权", "12336"} <= words
    assert "的" in load_stopwords()
    assert "不" not in load_stopwords()  # negation carries meaning
