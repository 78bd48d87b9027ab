"""Mask individual businesses' credit codes in everything the service returns or writes.

An individual business (个体工商户, unified social credit code starting with ``92``) is one
natural person, so its code is personal data. Masking keeps the registration authority,
category and region (the first eight characters) and the check character, which is enough to
read statistics and spot-check a case, and hides the nine characters that identify the person:
``92371000MA3MXH0E3W`` → ``92371000*********W``. Codes of companies and other organisations are
not personal data and are left alone. The masking of one code is
:func:`features.credit_code.mask`; this module finds codes wherever they occur.

Who sees codes in clear — only roles holding :data:`serving.auth.Permission.UNMASKED`:

* ``admin`` — yes. Admins ingest the raw registers and promote models; they handle the source
  data with every code in clear anyway, and resolving a masked code to a person, when an
  objection or an inspection needs it, should be a deliberate act by a small group, recorded
  in the audit log.
* ``platform`` — no. A platform sends the codes it asks about, so echoing them back adds
  nothing for it, while responses spread into its gateways, logs, caches and dashboards. The
  service therefore answers in request order so that results can be joined by position.
  The one exception is a draw's targets (``/v1/draws/create`` and ``/v1/draws/get``): the
  platform must know whom to inspect, so each target's ``credit_code`` (and each key of
  ``teams``) is the real code, resolved from the draw's public references
  (:mod:`serving.public_refs`). Everything else about a draw — its published files, the
  ``publish`` answer (the record as published), ``verify`` and ``lift`` — names individual
  businesses only by their **public references**: per-draw, keyed stand-ins that keep the draw
  re-runnable by anyone, which a mask (nine ``*``) would not, and that only the authority can
  link to a person (``serving/draws/SPEC.md`` §10).
* ``auditor`` — no. Auditors judge whether decisions and draws were made correctly (reasons,
  records, chain of the audit log); none of that needs the person's identity.
* unknown or missing role — masked (fail closed).

The audit log and the process logs are always masked (:func:`mask_personal`,
:class:`MaskingFilter`): they outlive the request and are read by people without the permission.

Detection: a value that is exactly an 18-character code starting with 92
(:func:`features.credit_code.is_individual_business`) is masked, and so is any 18-character
run inside free text that looks like such a code (``92``, six digits, ten characters of the
GB 32100 alphabet, case-insensitive, not part of a longer alphanumeric run). The check
character is *not* verified: a mistyped code is still somebody's code. Masking is idempotent —
a masked code contains ``*`` and no longer matches.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Container, Mapping
from typing import Any

from features.credit_code import is_individual_business, mask
from serving.auth import Permission, Role, has_permission

#: An individual business's code inside free text (see module docstring).
INDIVIDUAL_CODE_IN_TEXT = re.compile(
    r"(?<![0-9A-Za-z])92[0-9]{6}[0-9A-HJ-NP-RTUWXY]{10}(?![0-9A-Za-z])", re.IGNORECASE
)


def _mask_match(m: re.Match[str]) -> str:
    return mask(m.group(0))


def mask_text(value: str) -> str:
    """``value`` with every individual business's code masked (whole value or inside text)."""
    if "92" not in value:  # the common case, and cheap
        return value
    if len(value) == 18 and is_individual_business(value):
        return mask(value)
    return INDIVIDUAL_CODE_IN_TEXT.sub(_mask_match, value)


def _mask_key(key: Any, taken: Container[Any]) -> Any:
    """A masked dict key; two codes that mask alike get ``#2``, ``#3``… instead of colliding."""
    if not isinstance(key, str):
        return key
    masked = mask_text(key)
    if masked == key or masked not in taken:
        return masked
    n = 2
    while f"{masked}#{n}" in taken:
        n += 1
    return f"{masked}#{n}"


def _mask_series(s: Any) -> Any:
    pd = sys.modules["pandas"]
    if isinstance(s.dtype, pd.CategoricalDtype):
        return _mask_series(s.astype(object)).astype("category")
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        return s.map(lambda v: _mask_walk(v), na_action="ignore")
    return s


def _mask_index(index: Any) -> Any:
    pd = sys.modules["pandas"]
    if isinstance(index, pd.MultiIndex):
        return index.map(lambda t: tuple(_mask_walk(v) for v in t))
    if index.dtype == object or pd.api.types.is_string_dtype(index.dtype):
        return index.map(lambda v: mask_text(v) if isinstance(v, str) else v)
    return index


def _mask_walk(obj: Any) -> Any:
    kind = type(obj)  # exact built-in types first: the audit trail masks every payload
    if kind is str:
        return obj if "92" not in obj else mask_text(obj)
    if kind is list:
        return [v if type(v) is str and "92" not in v else _mask_walk(v) for v in obj]
    if kind is dict:
        out_d: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str) and "92" in k:
                k = _mask_key(k, out_d.keys())
            out_d[k] = v if type(v) is str and "92" not in v else _mask_walk(v)
        return out_d
    if isinstance(obj, str):
        return mask_text(obj)
    if obj is None or isinstance(obj, bool | int | float | bytes):
        return obj
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            out[_mask_key(k, out.keys())] = _mask_walk(v)
        return out
    if isinstance(obj, list):
        return [_mask_walk(v) for v in obj]
    if isinstance(obj, tuple):
        items = [_mask_walk(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, set | frozenset):
        return type(obj)(_mask_walk(v) for v in obj)
    pd = sys.modules.get("pandas")  # no pandas imported → obj cannot be a pandas object
    if pd is not None:
        if isinstance(obj, pd.DataFrame):
            out_df = obj.copy()
            for i in range(out_df.shape[1]):
                out_df.isetitem(i, _mask_series(out_df.iloc[:, i]))
            out_df.columns = _mask_index(out_df.columns)
            out_df.index = _mask_index(out_df.index)
            return out_df
        if isinstance(obj, pd.Series):
            out_s = _mask_series(obj)
            out_s = out_s.copy() if out_s is obj else out_s
            out_s.index = _mask_index(obj.index)
            if isinstance(obj.name, str):
                out_s.name = mask_text(obj.name)
            return out_s
    return obj


def mask_personal(obj: Any) -> Any:
    """Mask every individual business's code in ``obj``, whoever asks (audit log, logs).

    Walks dicts (keys and values), lists, tuples, sets, strings and pandas DataFrames / Series
    (string, object and categorical columns, column names, index). Returns new objects; the
    input is never modified. Other types pass through unchanged.
    """
    return _mask_walk(obj)


def mask_codes(obj: Any, role: str | Role | None) -> Any:
    """``obj`` as ``role`` may see it: unchanged for roles holding ``UNMASKED``, else masked."""
    if has_permission(role, Permission.UNMASKED):
        return obj
    return _mask_walk(obj)


class MaskingFilter(logging.Filter):
    """Masks individual businesses' codes in log records (message, arguments, traceback).

    The record is formatted here and its ``msg`` replaced by the masked text (``args`` cleared),
    so codes hidden inside objects' ``str()`` are caught too. Attach it to *handlers* (a filter
    on a logger does not see records propagated from child loggers) — :func:`install` does that.
    Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad format arguments: let the handler report it, masked
            record.msg = mask_text(str(record.msg))
            record.args = _mask_walk(record.args)
        else:
            record.msg = mask_text(message)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> MaskingFilter:
    """Add one :class:`MaskingFilter` to every handler of ``logger`` (default: the root logger).

    Call after logging is configured; handlers added later need ``handler.addFilter`` too.
    """
    target = logger if logger is not None else logging.getLogger()
    filt = MaskingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(filt)
    return filt
