"""The FastAPI sample API (see :mod:`sample_projects.fastapi_api.app`); run it with
``python -m sample_projects.fastapi_api``."""

from .app import create_app

__all__ = ["create_app"]
