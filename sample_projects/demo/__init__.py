"""The one-command demo: ``python -m sample_projects.demo`` (see :mod:`sample_projects.demo.runner`)."""
