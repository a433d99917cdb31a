"""Alembic environment of the durable store.

Only ever run by :class:`solvency.adapters.store.EventStore`, which passes an open
connection already inside a transaction (``config.attributes["connection"]``): the schema
check, the upgrade and the version stamp then commit or roll back together, and two
processes opening the same store serialize on that transaction's lock instead of racing.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by running alembic by hand
    raise RuntimeError("the solvency store migrates itself on open: use EventStore(url)")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
