"""Registry: safe skops persistence, provenance, refusal of foreign artefacts, versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.errors import ModelError, ModelFormatError, NotFoundError
from triage.model import PetitionClassifier
from triage.registry import (
    ARTEFACT,
    METADATA,
    current_version,
    list_versions,
    load_model,
    promote,
    rollback,
    save_model,
)

TEXTS = [
    "村里宅基地被邻居占了，界址不清，要求确权调处",
    "两个村民小组为山林地界争执多年，请求政府确权",
    "有人在基本农田上违法建厂，未批先建，请求查处",
    "村干部私自出卖集体土地建小产权房，违法占地",
    "我的不动产权证办了一年还办不下来",
    "安置房的房产证迟迟不发，登记中心推诿",
] * 3
LABELS = [
    "land_title_dispute",
    "land_title_dispute",
    "land_illegal_use",
    "land_illegal_use",
    "property_registration",
    "property_registration",
] * 3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    est = PetitionClassifier(min_df=1, calibration_folds=2).fit(TEXTS, LABELS)
    return save_model(est, tmp_path_factory.mktemp("reg") / "v1", {"note": "test"})


def test_round_trip(model_dir: Path) -> None:
    loaded = load_model(model_dir)
    meta = json.loads((model_dir / METADATA).read_text("utf-8"))
    for key in (
        "created_at",
        "git_commit",
        "labels",
        "libraries",
        "format_version",
        "artefact_sha256",
    ):
        assert key in meta
    assert meta["note"] == "test" and loaded.version == "v1"
    assert list(loaded.estimator.predict(TEXTS)) == LABELS


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(model_dir, dst)
    return dst


def test_refuses_other_format_version(model_dir: Path, tmp_path: Path) -> None:
    dst = _copy(model_dir, tmp_path)
    meta = json.loads((dst / METADATA).read_text("utf-8"))
    meta["format_version"] = 999
    (dst / METADATA).write_text(json.dumps(meta), "utf-8")
    with pytest.raises(ModelFormatError, match="format version 999"):
        load_model(dst)


def test_refuses_other_sklearn_version(model_dir: Path, tmp_path: Path) -> None:
    dst = _copy(model_dir, tmp_path)
    meta = json.loads((dst / METADATA).read_text("utf-8"))
    meta["libraries"]["scikit-learn"] = "0.24.2"
    (dst / METADATA).write_text(json.dumps(meta), "utf-8")
    with pytest.raises(ModelFormatError, match=r"scikit-learn 0\.24\.2"):
        load_model(dst)


def test_refuses_untrusted_types(model_dir: Path, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    dst = _copy(model_dir, tmp_path)
    sio.dump(Pipeline([("f", FunctionTransformer(print))]), dst / ARTEFACT)
    with pytest.raises(ModelFormatError, match="trusted"):
        load_model(dst)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a triage model folder"):
        load_model(tmp_path / "empty")


def test_versions_promote_rollback(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "models"
    for name in ("default", "v2"):
        shutil.copytree(model_dir, root / name)
    assert current_version(root) == "default"
    assert {v["version"] for v in list_versions(root)} == {"default", "v2"}
    assert promote("v2", root) == "default"
    assert current_version(root) == "v2"
    assert load_model(models_dir=root).path == root / "v2"
    assert rollback(root) == "default"
    assert current_version(root) == "default"
    with pytest.raises(NotFoundError):
        rollback(root)
    with pytest.raises(NotFoundError):
        promote("v9", root)


def test_refuses_artefact_missing_fitted_attributes(model_dir: Path, tmp_path: Path) -> None:
    import skops.io as sio

    dst = _copy(model_dir, tmp_path)
    est = load_model(dst).estimator
    del est.calibrator_coef_
    sio.dump(est, dst / ARTEFACT)
    with pytest.raises(ModelFormatError, match="calibrator_coef_"):
        load_model(dst)
