"""Small ASGI apps (Starlette, FastAPI, a bare ASGI callable) for the ASGI adapter tests and servers."""
