"""What the gateway takes in a request body: the base of every body model, and its numbers.

Text holds no control characters (NUL, escape sequences, bidirectional overrides that make a
name read backwards), except line breaks and tabs in the fields named in ``MULTILINE``.
Money and quantities are JSON numbers: not strings (``"1_000"``, ``" 5 "``, full-width
digits), not booleans.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

MULTILINE = frozenset({"description"})
# Format characters that change the order text is shown in (Trojan Source, CVE-2021-42574).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_text(value: str, *, multiline: bool = False) -> str:
    for c in value:
        if (unicodedata.category(c) == "Cc" and not (multiline and c in "\n\t")) or c in _BIDI:
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
