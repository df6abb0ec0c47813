"""A tiny demonstration service pair, for the test suite only (never part of the product).

``ledger`` records entries and publishes ``EntryRecorded`` through its outbox; ``tally`` (and
its twin ``mirror``, a second consuming service) counts them per account through its inbox.
They prove the runtime embedded and as separate processes, and give the reliability tests real
tables to look at.
"""
