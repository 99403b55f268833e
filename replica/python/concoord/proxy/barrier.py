"""Barrier proxy (Barrier(count=1): releases its waiters when `count` have arrived.)."""

from .._proxies import SYNC

Barrier = SYNC["Barrier"]

__all__ = ["Barrier"]
