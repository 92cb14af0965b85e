"""Saving and loading JSON files, atomically.

Training statistics, evaluation tables and manifests are stored as JSON, never
as pickle: a JSON file is readable by people and cannot run code when loaded.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays to plain Python; NaN/inf become None."""
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return _to_jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON: {obj!r}")


def save_json(data: Any, path: str | os.PathLike, *, indent: int | None = 1) -> Path:
    """Write ``data`` as JSON to ``path`` atomically and return the path.

    numpy and torch values are converted to plain numbers and lists.  The
    file is written to a temporary file in the same folder and then renamed
    over ``path``, so a crash leaves either the old file or the new one,
    never half of one.  Raises ``TypeError`` for values JSON cannot hold.
    """
    path = Path(path)
    text = json.dumps(_to_jsonable(data), indent=indent, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file.  Raises ``FileNotFoundError`` naming the path if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSON file at {path}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
