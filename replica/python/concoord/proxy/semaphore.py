"""Semaphore proxy (Semaphore(count=1).)."""

from .._proxies import SYNC

Semaphore = SYNC["Semaphore"]

__all__ = ["Semaphore"]
