"""A small Django project for the Django adapter's tests (in-process and under real servers)."""
