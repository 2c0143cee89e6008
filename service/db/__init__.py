"""Persistence: typed SQLAlchemy models and the session factory."""
