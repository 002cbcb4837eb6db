"""Passwords out of everything written down: ``scheme://user:secret@host`` becomes ``scheme://user:***@host`` in
tags, params, logged configs, messages and command lines (workers get the real URL by environment)."""

from __future__ import annotations

import re

__all__ = ["redact"]

_USERINFO = re.compile(r"://([^:/@\s'\"]+):[^@\s'\"]*@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"://\1:***@", text)
