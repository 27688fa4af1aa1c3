"""Model registry: versioned folders of a skops artefact plus ``metadata.json``.

Layout of a registry folder (``settings.models_dir``, ``models/`` in a checkout)::

    models/
      registry.json          {"current": "default", "history": ["default", ...]}
      default/               the shipped model
        model.skops
        metadata.json
      20261121-101500/       versions made by ``triage train --out`` or ``triage retrain``

Loading is safe by construction: an artefact made only of triage's own classes, builtins and
numeric arrays is read directly from the skops zip (``allow_pickle=False``, no import of skops or
scikit-learn, which keeps cold start under a second); anything else goes to skops, which refuses
any type that is not in :data:`TRUSTED_TYPES`. We also refuse an artefact whose format version
or scikit-learn version differs from this installation instead of guessing that it still works.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from triage.errors import ModelError, ModelFormatError, NotFoundError
from triage.model import PetitionClassifier

__all__ = [
    "ARTEFACT",
    "FORMAT_VERSION",
    "METADATA",
    "TRUSTED_TYPES",
    "LoadedModel",
    "current_version",
    "file_sha256",
    "library_versions",
    "list_versions",
    "load_model",
    "promote",
    "resolve_model_path",
    "rollback",
    "save_model",
]

#: Bump when the artefact layout or the estimator's fitted attributes change.
#: 2: the calibrator is stored as arrays (calibrator_coef_, calibrator_intercept_).
FORMAT_VERSION = 2
#: Fitted attributes a loadable estimator must have (a guard besides the format version).
_FITTED = (
    "classes_",
    "features_",
    "coef_",
    "intercept_",
    "calibrator_coef_",
    "calibrator_intercept_",
)
ARTEFACT = "model.skops"
METADATA = "metadata.json"
REGISTRY = "registry.json"

#: Every type a triage artefact may contain beyond skops' defaults. Nothing else loads.
TRUSTED_TYPES: tuple[str, ...] = (
    "triage.model.PetitionClassifier",
    "triage.features.TextFeatures",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float32",
    "numpy.float64",
    "numpy.int64",
    "numpy.uint64",
    "builtins.tuple",
)

_PINNED = ("scikit-learn", "numpy", "skops")


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artefact depends on, plus Python's."""
    out = {name: importlib_metadata.version(name) for name in _PINNED}
    out["python"] = platform.python_version()
    try:
        out["triage"] = importlib_metadata.version("triage")
    except importlib_metadata.PackageNotFoundError:
        out["triage"] = "unknown"
    return out


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@dataclass(frozen=True)
class LoadedModel:
    """A loaded artefact with its registry identity."""

    path: Path
    version: str
    estimator: PetitionClassifier
    metadata: dict[str, Any]


def save_model(
    estimator: PetitionClassifier, out_dir: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``estimator`` and its metadata to ``out_dir`` atomically; return the folder.

    ``metadata`` is merged over the fields recorded here: created_at, git commit, label set,
    library versions, format version.
    """
    import skops.io as sio

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "labels": [str(c) for c in estimator.classes_],
        "params": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in estimator.get_params().items()
        },
        "libraries": library_versions(),
    }
    meta.update(metadata or {})
    # Write beside the target and rename, so a crash never leaves half an artefact.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        # Stored, not deflated: the arrays are mostly incompressible float32 weights (deflate
        # saves a third of the size) and inflating them cost 0.3-0.5 s of every cold start.
        sio.dump(estimator, tmp / ARTEFACT, compression=0)  # zipfile.ZIP_STORED
        meta["artefact_sha256"] = file_sha256(tmp / ARTEFACT)
        (tmp / METADATA).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", "utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _check_compatible(meta: dict[str, Any], path: Path) -> None:
    fmt = meta.get("format_version")
    if fmt != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: artefact format version {fmt!r}, this triage reads version "
            f"{FORMAT_VERSION}; retrain it with 'triage train' using this version"
        )
    have = library_versions()
    want = meta.get("libraries", {})
    for lib in ("scikit-learn", "skops"):
        built, installed = want.get(lib), have[lib]
        if built is None or built.split(".")[:2] != installed.split(".")[:2]:
            raise ModelFormatError(
                f"{path}: artefact was built with {lib} {built}, installed is {installed}; "
                f"install {lib}=={built} or retrain with 'triage train'"
            )


class _ForeignContentError(Exception):
    """The artefact holds something the fast reader does not know; skops must judge it."""


_SKOPS_PROTOCOL = 2


def _read_known_artefact(artefact: Path) -> Any:
    """Read a skops artefact made only of triage's own types, without importing skops.

    ``import skops.io`` pulls in scikit-learn and scipy (over a second of cold start), but a
    triage artefact holds just two classes of ours, builtins and numeric NumPy arrays. This
    reader builds exactly those from the skops zip (arrays with ``allow_pickle=False``) and
    raises :class:`_ForeignContentError` on anything else, so that skops' type check decides.
    It is stricter than skops, never looser: no type outside that set is ever constructed.
    """
    import io
    import zipfile

    import numpy as np

    from triage.features import TextFeatures

    classes: dict[tuple[str, str], type] = {
        ("triage.model", "PetitionClassifier"): PetitionClassifier,
        ("triage.features", "TextFeatures"): TextFeatures,
    }
    with zipfile.ZipFile(artefact) as zf:
        schema = json.loads(zf.read("schema.json"))
        if schema.get("protocol") != _SKOPS_PROTOCOL:
            raise _ForeignContentError(f"skops protocol {schema.get('protocol')!r}")

        def is_str_type(node: dict[str, Any]) -> bool:
            return node.get("__loader__") == "TypeNode" and (
                node.get("__module__"),
                node.get("__class__"),
            ) == ("builtins", "str")

        def build(node: dict[str, Any]) -> Any:
            kind, where = node["__loader__"], (node.get("__module__"), node.get("__class__"))
            if kind == "JsonNode" and node.get("is_json") is True:
                return json.loads(node["content"])
            if kind == "TupleNode":
                return tuple(build(c) for c in node["content"])
            if kind == "ListNode":
                return [build(c) for c in node["content"]]
            if kind == "DictNode" and where == ("builtins", "dict"):
                key_types = node["key_types"]["content"]
                if len(key_types) != len(node["content"]) or not all(map(is_str_type, key_types)):
                    raise _ForeignContentError("a dict with non-string keys")
                return {k: build(v) for k, v in node["content"].items()}
            if kind == "NdArrayNode" and where == ("numpy", "ndarray"):
                if node["type"] == "numpy":
                    return np.load(io.BytesIO(zf.read(node["file"])), allow_pickle=False)
                if node["type"] == "json":  # object arrays (class labels): items are nodes
                    items = [build(c) for c in node["content"]]
                    out = np.empty(len(items), dtype=object)
                    out[:] = items
                    return out.reshape(build(node["shape"]))
            if kind == "ObjectNode" and where in classes:
                cls = classes[where]
                obj = cls.__new__(cls)
                obj.__dict__.update(build(node["content"]))
                return obj
            raise _ForeignContentError(f"{kind} {where[0]}.{where[1]}")

        return build(schema)


def _load_with_skops(artefact: Path) -> Any:
    """Load with skops itself, refusing any type outside :data:`TRUSTED_TYPES`."""
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(file=artefact)) - set(TRUSTED_TYPES)
    if untrusted:
        raise ModelFormatError(
            f"{artefact} contains types outside triage's trusted list: {sorted(untrusted)}; "
            "refusing to load it"
        )
    return sio.load(artefact, trusted=list(TRUSTED_TYPES))


def load_model(path: str | Path | None = None, models_dir: str | Path | None = None) -> LoadedModel:
    """Load a model folder (default: the registry's current version) safely."""
    folder = resolve_model_path(path, models_dir)
    meta_file, artefact = folder / METADATA, folder / ARTEFACT
    if not artefact.is_file() or not meta_file.is_file():
        raise ModelError(
            f"{folder} is not a triage model folder (expected {ARTEFACT} and {METADATA}); "
            "train one with 'triage train --data FILE --out DIR'"
        )
    try:
        meta = json.loads(meta_file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{meta_file}: unreadable metadata ({exc})") from exc
    _check_compatible(meta, folder)
    try:
        try:
            estimator = _read_known_artefact(artefact)
        except _ForeignContentError:
            estimator = _load_with_skops(artefact)
    except ModelFormatError:
        raise
    except Exception as exc:  # zip, JSON and skops errors all mean the same to the user
        raise ModelFormatError(f"{artefact}: cannot load ({type(exc).__name__}: {exc})") from exc
    if not isinstance(estimator, PetitionClassifier):
        raise ModelFormatError(f"{artefact} holds a {type(estimator).__name__}, not a model")
    missing = [name for name in _FITTED if not hasattr(estimator, name)]
    if missing:
        raise ModelFormatError(
            f"{artefact} lacks fitted attributes {missing}: it was saved by another version "
            "of triage; retrain it with 'triage train'"
        )
    version = str(meta.get("version") or folder.name)
    return LoadedModel(folder, version, estimator, meta)


# -- versions ---------------------------------------------------------------------------
def _models_dir(models_dir: str | Path | None) -> Path:
    if models_dir is not None:
        return Path(models_dir)
    from triage.settings import get_settings

    return get_settings().models_dir


def _read_registry(root: Path) -> dict[str, Any]:
    file = root / REGISTRY
    if file.is_file():
        try:
            data = json.loads(file.read_text("utf-8"))
        except ValueError as exc:
            raise ModelError(f"{file}: not valid JSON ({exc}); fix or delete it") from exc
        data.setdefault("history", [])
        return data
    return {"current": "default", "history": ["default"]}


def _write_registry(root: Path, data: dict[str, Any]) -> None:
    tmp = root / f".{REGISTRY}.tmp"
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", "utf-8")
    os.replace(tmp, root / REGISTRY)


def list_versions(models_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every model folder in the registry with its metadata, oldest first."""
    root = _models_dir(models_dir)
    current = current_version(root)
    out = []
    for folder in (
        sorted(p for p in root.iterdir() if (p / METADATA).is_file()) if root.is_dir() else []
    ):
        try:
            meta = json.loads((folder / METADATA).read_text("utf-8"))
        except ValueError:
            meta = {}
        out.append({"version": folder.name, "current": folder.name == current, **meta})
    out.sort(key=lambda m: str(m.get("created_at", "")))
    return out


def current_version(models_dir: str | Path | None = None) -> str:
    """Name of the version the registry serves by default."""
    return str(_read_registry(_models_dir(models_dir)).get("current", "default"))


def resolve_model_path(
    path: str | Path | None = None, models_dir: str | Path | None = None
) -> Path:
    """A model folder from an explicit path, a version name, or the registry's current."""
    if path is not None:
        p = Path(path)
        if p.is_dir():
            return p
        root = _models_dir(models_dir)
        if (root / str(path)).is_dir():
            return root / str(path)
        raise NotFoundError(f"model {path!s} not found (neither a folder nor a version in {root})")
    from triage.settings import get_settings

    settings = get_settings()
    if models_dir is None and settings.model_path is not None:
        return settings.model_path
    root = _models_dir(models_dir)
    folder = root / current_version(root)
    if not folder.is_dir():
        raise ModelError(
            f"no default model at {folder}; train one with "
            "'triage train --data FILE --out models/default' or set TRIAGE_MODEL_PATH"
        )
    return folder


def promote(version: str, models_dir: str | Path | None = None) -> str:
    """Make ``version`` the current model; returns the previous current version."""
    root = _models_dir(models_dir)
    if not (root / version / METADATA).is_file():
        raise NotFoundError(f"no model version {version!r} in {root}; see 'triage models list'")
    data = _read_registry(root)
    previous = str(data.get("current", "default"))
    data["current"] = version
    data["history"] = [*data["history"], version]
    _write_registry(root, data)
    return previous


def rollback(models_dir: str | Path | None = None) -> str:
    """Go back to the version that was current before the last promotion; returns it."""
    root = _models_dir(models_dir)
    data = _read_registry(root)
    history = [v for v in data["history"] if (root / v / METADATA).is_file()]
    if len(history) < 2:
        raise NotFoundError(f"nothing to roll back to in {root}: only {history} were ever current")
    history.pop()
    data["history"], data["current"] = history, history[-1]
    _write_registry(root, data)
    return history[-1]
