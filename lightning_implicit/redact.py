"""Passwords out of everything written down: ``scheme://user:secret@host`` becomes ``scheme://user:***@host`` in
tags, params, logged configs, messages, log lines, tracebacks and command lines (workers get the real URL by
environment).

:func:`redact` is the one function; :func:`redact_process_output` (called once by the command line) applies it
to every log record and to the traceback of an uncaught exception.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback

__all__ = ["redact", "redact_process_output"]

_USERINFO = re.compile(r"://([^:/@\s'\"]+):[^@\s'\"]*@")
# libpq keyword/value connection strings and SQLAlchemy's repr of a URL's query (password=...)
_KEYWORD = re.compile(r"\b(password|passwd|pwd)=([^\s&'\",;)]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (and any ``password=...`` value)."""
    return _KEYWORD.sub(r"\1=***", _USERINFO.sub(r"://\1:***@", text))


def _redacting_factory(make):
    def factory(*args, **kwargs):
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record

    factory.redacts = True
    return factory


def _redacting_excepthook(exc_type, exc, tb) -> None:
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(redact(text))


def redact_process_output() -> None:
    """Every log record's message and an uncaught exception's traceback pass through :func:`redact`, and MLflow
    prints no run URL of its own (the command line's boundary; library code never calls this)."""
    # MLflow writes "View run ... at: <tracking URI>" to stdout itself, password included: the run summary
    # names the run and its UI (redacted) instead
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    make = logging.getLogRecordFactory()
    if not getattr(make, "redacts", False):
        logging.setLogRecordFactory(_redacting_factory(make))
    sys.excepthook = _redacting_excepthook
