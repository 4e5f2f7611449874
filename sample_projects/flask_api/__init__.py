"""The Flask sample API (see :mod:`sample_projects.flask_api.app`).

Run it with ``python -m sample_projects.flask_api``.
"""

from .app import create_app

__all__ = ["create_app"]
