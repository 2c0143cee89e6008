"""The web console at /console (issue #16): inbox, projects with their diagrams, supervision and definitions,
for people, behind the same authentication and access policy as /api/v1. Mounted by app.py with one line."""
from service.console.routes import router

__all__ = ["router"]
