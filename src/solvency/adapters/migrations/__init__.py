"""Alembic migrations of the durable store (:mod:`solvency.adapters.store`).

A package (not a loose folder) so that setuptools ships ``env.py`` and ``versions/`` in the
wheel and mypy checks them like the rest of ``src/``. The store runs them programmatically
on open (``upgrade head``); there is no ``alembic.ini``.
"""
