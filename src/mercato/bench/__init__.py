"""``mercato bench``: the system under load like real shoppers, beside the raw limits of what
it runs on (broker, database, a bare HTTP endpoint), measured in the same run.

- ``system``: starts the system under test in its own process (embedded or one per service).
- ``shoppers``: set-up and the shopper loop; ``invariants``: the check after a scenario settles;
  ``wdm``: the WDM benchmark's load, on our gateway and on any other base URL.
- ``raw``: the raw limits; ``hello``: the bare uvicorn endpoint; ``hammer``: the HTTP hammer.
- ``scrape``: Prometheus counters; ``stats``: percentiles and the ceiling (pure).
- ``report``: the rich table, the JSON file, the PNG plot; ``run``: the whole run.
"""
