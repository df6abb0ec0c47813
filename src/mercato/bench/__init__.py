"""``mercato bench``: the system under load like real shoppers, beside the raw limits of what
it runs on (broker, database, a bare HTTP endpoint), measured in the same run.

- ``system``: starts the system under test in its own process (embedded or one per service).
- ``shoppers``: set-up, the shopper loop, the invariant check; ``wdm``: the WDM benchmark load.
- ``raw``: the raw limits; ``hello``: the bare uvicorn endpoint; ``hammer``: the HTTP hammer.
- ``scrape``: Prometheus counters; ``stats``: percentiles and the ceiling (pure).
- ``report``: the rich table, the JSON file, the PNG plot; ``run``: the whole run.
"""
