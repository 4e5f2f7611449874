"""Replay store implementations (the in-memory one here; Redis and Django cache in their modules)."""

from .memory import MemoryReplayStore

__all__ = ["MemoryReplayStore"]
