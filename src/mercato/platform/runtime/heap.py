"""The garbage collector's settings for a long-running process (``docs/performance.md``)."""

from __future__ import annotations

import gc

# Net new container objects (allocated less freed) before a young collection; Python's own
# default is 700. A request, an event or a checkout makes a few hundred and frees nearly all
# of them, so at 700 the collector ran about a hundred times a second under the bench's load,
# each time walking whatever happened to be alive, and promoted enough of it that a full
# collection (15–20 ms with the event loop standing still) came every second or so.
YOUNG = 50_000


def settle() -> None:
    """Once start-up is done: what it made (modules, protobuf descriptors, the apps, the
    pydantic schemas: several hundred thousand objects that live as long as the process) goes
    out of the collector's sight, or every full collection would walk all of it, the event
    loop standing still for 0.1–0.8 s (measured under the bench's load); and young collections
    wait for ``YOUNG`` net new objects. Cycles are still collected, in fewer, larger passes."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
