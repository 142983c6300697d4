"""Alembic migrations of editq's schema; ``env.py`` takes the target from ``models``."""
