"""Condition proxy (Condition(): a lock with wait/notify.)."""

from .._proxies import SYNC

Condition = SYNC["Condition"]

__all__ = ["Condition"]
