"""Alembic scripts of the canonical store; run them through `sync.migrate`, not the alembic CLI."""
