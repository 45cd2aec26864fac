"""Strict schema validation of rendered objects: Kubernetes built-ins with kubernetes-validate, CRD objects
with their pydantic models. An unknown kind is an error, never a warning."""
from __future__ import annotations

import warnings
from typing import Any, Literal

import kubernetes_validate
from cloudcoil.models.velero import v1 as velero_v1
from pydantic import BaseModel, ConfigDict, Field, ValidationError



class _ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=253)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class VolumeSnapshotClass(BaseModel):
    """snapshot.storage.k8s.io/v1 VolumeSnapshotClass, from the external-snapshotter CRD (cluster-scoped)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    apiVersion: Literal["snapshot.storage.k8s.io/v1"]
    kind: Literal["VolumeSnapshotClass"]
    metadata: _ObjectMeta
    driver: str = Field(min_length=1)
    deletionPolicy: Literal["Delete", "Retain"]
    parameters: dict[str, str] | None = None


CRD_MODELS: dict[tuple[str, str], Any] = {
    ("velero.io/v1", "BackupStorageLocation"): velero_v1.BackupStorageLocation,
    ("velero.io/v1", "Schedule"): velero_v1.Schedule,
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"): VolumeSnapshotClass,
}


def _dropped(original: Any, kept: Any, path: str = "") -> list[str]:
    """Keys present in `original` that the model did not keep: unknown fields."""
    out: list[str] = []
    if isinstance(original, dict):
        kept = kept if isinstance(kept, dict) else {}
        for k, v in original.items():
            if k not in kept:
                out.append(f"{path}.{k}" if path else k)
            else:
                out += _dropped(v, kept[k], f"{path}.{k}" if path else k)
    elif isinstance(original, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(original, kept)):
            out += _dropped(a, b, f"{path}[{i}]")
    return out


def validate_crd(obj: dict[str, Any]) -> list[str]:
    model = CRD_MODELS.get((obj.get("apiVersion"), obj.get("kind")))
    if model is None:
        return [f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}: no schema and no model"]
    try:
        parsed = model.model_validate(obj)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    dumped = parsed.model_dump(by_alias=True, exclude_none=True, mode="json")
    return [f"{p}: unknown field" for p in _dropped(obj, dumped)]


def validate_object(obj: dict[str, Any], kubernetes_version: str) -> list[str]:
    """Problems of one object against the given Kubernetes minor (e.g. "1.31"); empty when valid."""
    version = kubernetes_version if kubernetes_version.count(".") == 2 else f"{kubernetes_version}.0"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kubernetes_validate.validate(obj, version, strict=True)
        if caught:
            return [str(w.message) for w in caught]
        return []
    except kubernetes_validate.SchemaNotFoundError:
        return validate_crd(obj)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.InvalidSchemaError as exc:  # pragma: no cover - a broken wheel
        return [f"invalid schema: {exc}"]
