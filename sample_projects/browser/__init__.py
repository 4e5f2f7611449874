"""The browser sample: a single-page app with a non-extractable WebCrypto DPoP key (``static/``),
served by the sample issuer; ``python -m sample_projects.browser`` starts what it needs."""

from pathlib import Path

__all__ = ["STATIC_DIR"]

#: The page's files (plain ES modules, no build step), served at ``<issuer>/browser/``.
STATIC_DIR = Path(__file__).resolve().parent / "static"
