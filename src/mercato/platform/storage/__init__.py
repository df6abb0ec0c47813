"""Per-service database access: engine, platform tables, migrations, outbox, inbox, dead letters."""
