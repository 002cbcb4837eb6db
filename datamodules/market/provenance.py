"""Provenance fingerprints for the data card: file and content SHA-256, JSON-safe provenance dicts."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content_sha256(df: pd.DataFrame) -> str:
    """Hash of a normalised bar frame (index in UTC ns + values), independent of file format."""
    h = hashlib.sha256()
    idx = df.index.tz_convert("UTC").as_unit("ns").tz_localize(None)
    h.update(np.asarray(idx.to_numpy(), dtype="datetime64[ns]").view(np.int64).tobytes())
    for col in df.columns:
        h.update(col.encode())
        h.update(np.ascontiguousarray(df[col].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)
