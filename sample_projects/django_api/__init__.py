"""The Django + DRF sample API; run it with ``python -m sample_projects.django_api``.

``DJANGO_SETTINGS_MODULE=sample_projects.django_api.settings``; the ``DPOP`` setting is built by
:func:`sample_projects.django_api.config.dpop_setting` from the environment.
"""
