"""Evidence for the autograder: what a hidden test observed, sent out of the kernel as plain data.

A hidden test calls the student's function on inputs the student has not seen
and passes the result to :func:`record`.  While grading (``COURSE_GRADING=1``)
this displays the value as plain JSON under a private MIME type in the test
cell's output; otherwise it does nothing.

The grader never asks the student's kernel whether a test passed.  It reads
the recorded values and compares them, in its own process, with the values the
instructor's solution recorded in a separate run (:mod:`course_instructor.grading.verify`).
Code in the student's kernel can silence errors, patch ``torch.equal`` or this
very function, but it cannot make a wrong answer equal the right one without
computing the right one.

Values are converted to JSON types here (tensors and arrays with their dtype
and shape, DataFrames column by column).  Objects of any other type are
recorded by their type name only, so an object whose ``==`` always answers
True compares equal to nothing.
"""
from __future__ import annotations

import math
import os

MIME = "application/vnd.course-lib.evidence+json"


def grading() -> bool:
    """True inside an autograding kernel."""
    return bool(os.environ.get("COURSE_GRADING"))


def _number(x: float):
    # JSON has no NaN/inf: tag them (the grader reads the tag back)
    return x if math.isfinite(x) else {"__float__": repr(x)}


def to_plain(value, _depth: int = 0):
    """``value`` as JSON data: bool/int/float/str/None, lists and str-keyed dicts of those."""
    if _depth > 20:
        return {"__unsupported__": "nesting deeper than 20"}
    t = type(value)
    if value is None or t is bool:
        return value
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return _number(float.__float__(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (list, tuple)):
        return [to_plain(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[str(k), to_plain(v, _depth + 1)] for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))]}
    module = t.__module__.split(".")[0]
    if module == "torch":
        import torch

        if isinstance(value, torch.Tensor):
            v = value.detach().cpu()
            flat = v.reshape(-1).double().tolist() if v.is_floating_point() else v.reshape(-1).tolist()
            return {"__tensor__": str(v.dtype), "shape": list(v.shape),
                    "data": [_number(x) if isinstance(x, float) else x for x in flat]}
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            flat = value.reshape(-1).tolist()
            return {"__tensor__": f"numpy.{value.dtype}", "shape": list(value.shape),
                    "data": [_number(x) if isinstance(x, float) else x for x in flat]}
        if isinstance(value, np.generic):
            return to_plain(value.item(), _depth + 1)
    if module == "pandas":
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return {"__frame__": [[str(c), to_plain(value[c].tolist(), _depth + 1)] for c in value.columns]}
        if isinstance(value, pd.Series):
            return to_plain(value.tolist(), _depth + 1)
    return {"__unsupported__": f"{t.__module__}.{t.__qualname__}"}


def record(key: str, value, *, rtol: float = 1e-5, atol: float = 1e-8) -> None:
    """Record ``value`` under ``key`` for the grader (no-op unless grading).

    ``rtol``/``atol`` say how close a float must be to the solution's value;
    the grader takes them from the solution's run, never from a student's.
    """
    if not grading():
        return
    from IPython.display import display

    display({MIME: {"key": str(key), "value": to_plain(value), "rtol": float(rtol), "atol": float(atol)}},
            raw=True)
