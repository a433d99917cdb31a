"""Revision files of the store schema, applied in order by Alembic (it skips this file)."""
