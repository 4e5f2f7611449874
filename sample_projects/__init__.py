"""Sample services for dpop-middleware: copy one into your project, or run them all with the demo.

* :mod:`sample_projects.issuer`: a small OAuth 2.0 authorization server (client credentials only)
  issuing RFC 9068 JWT access tokens bound to the client's DPoP key (``cnf.jkt``).
* :mod:`sample_projects.django_api`, :mod:`sample_projects.flask_api`,
  :mod:`sample_projects.fastapi_api`: the same small API in three frameworks.
* :mod:`sample_projects.demo`: ``python -m sample_projects.demo`` starts all four and walks a client
  through the DPoP story against each API.

Every sample reads its settings from environment variables (:mod:`sample_projects.common`).
"""
