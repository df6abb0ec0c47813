"""The demo pair's one event (defined here, not in the product's contracts)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mercato.contracts.events import Id, Money, Payload


class EntryRecorded(Payload):
    """An entry was written to an account: ``n`` counts the account's entries from 1.

    ``pause`` (seconds) makes the consuming handler take its time, for shutdown tests.
    """

    entryId: Id
    account: Id
    n: Annotated[int, Field(ge=1)]
    amount: Money
    pause: Annotated[float, Field(ge=0, le=60)] = 0.0
