"""What the gateway takes in a request body: the base of every body model, and its numbers.

Text holds no control characters (NUL, escape sequences, bidirectional overrides that make a
name read backwards), except line breaks and tabs in the fields named in ``MULTILINE``.
Money and quantities are JSON numbers: not strings (``"1_000"``, ``" 5 "``, full-width
digits), not booleans.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

MULTILINE = frozenset({"description"})
# Control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) and the format
# characters that change the order text is shown in (Trojan Source, CVE-2021-42574). One
# compiled class: a search in C, not a category look-up per character in Python.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_REFUSED = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_REFUSED_MULTILINE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")  # \t, \n kept


def check_text(value: str, *, multiline: bool = False) -> str:
    if (_REFUSED_MULTILINE if multiline else _REFUSED).search(value):
        raise ValueError("holds a control character")
    return value


def json_number(value: Any) -> Any:
    """A JSON number (int or float; a Decimal made in code), nothing else."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a JSON number")
    return value


class Input(BaseModel):
    """A request body: unknown fields refused, text without control characters."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            check_text(value, multiline=info.field_name in MULTILINE)
        return value


# A count in a body: a JSON integer (no "2", no true, no 2.0).
Count = Annotated[int, Field(strict=True)]
Number = BeforeValidator(json_number)
