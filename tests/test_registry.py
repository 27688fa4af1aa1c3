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


def _same(a: object, b: object, where: str = "model") -> None:
    """Deep equality of two loaded estimators: types, attributes, array dtypes and values."""
    import numpy as np

    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert (a == b).all(), where
    elif hasattr(a, "__dict__"):
        assert vars(a).keys() == vars(b).keys(), where
        for key in vars(a):
            _same(vars(a)[key], vars(b)[key], f"{where}.{key}")
    else:
        assert a == b, where


def test_fast_reader_builds_what_skops_builds(model_dir: Path) -> None:
    from triage.registry import _load_with_skops, _read_known_artefact

    fast = _read_known_artefact(model_dir / ARTEFACT)
    _same(fast, _load_with_skops(model_dir / ARTEFACT))
    assert list(fast.predict(TEXTS)) == LABELS


def test_fast_reader_hands_foreign_content_to_skops(model_dir: Path, tmp_path: Path) -> None:
    """Anything but our own classes is not built by the fast reader; skops' check decides."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from triage.registry import _ForeignContentError, _read_known_artefact

    dst = _copy(model_dir, tmp_path)
    est = load_model(dst).estimator
    est.features_.extra_ = FunctionTransformer(print)  # builtins.print: untrusted, nested deep
    sio.dump(est, dst / ARTEFACT)
    with pytest.raises(_ForeignContentError, match="FunctionTransformer"):
        _read_known_artefact(dst / ARTEFACT)
    with pytest.raises(ModelFormatError, match="trusted"):
        load_model(dst)


def test_corrupt_artefact_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    dst = _copy(model_dir, tmp_path)
    (dst / ARTEFACT).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFormatError, match="cannot load"):
        load_model(dst)


def test_artefact_is_stored_uncompressed(model_dir: Path) -> None:
    """Inflating the weights cost 0.3-0.5 s of cold start: arrays are stored as they are."""
    import zipfile

    with zipfile.ZipFile(model_dir / ARTEFACT) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_loading_and_predicting_imports_no_heavy_library(model_dir: Path) -> None:
    """Cold start: loading a model and classifying must not import skops, sklearn or SciPy."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from triage.registry import load_model\n"
        f"model = load_model({str(model_dir)!r}).estimator\n"
        f"model.predict({TEXTS[:2]!r})\n"
        "heavy = sorted(m for m in ('skops', 'sklearn', 'scipy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
