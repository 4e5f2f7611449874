"""The sample authorization server (see :mod:`sample_projects.issuer.app`); run it with
``python -m sample_projects.issuer``."""

from .app import DEMO_CLIENTS, Client, create_app, issuer_settings

__all__ = ["DEMO_CLIENTS", "Client", "create_app", "issuer_settings"]
