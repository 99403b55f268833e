"""Stack proxy (Stack(): LIFO.)."""

from .._proxies import SYNC

Stack = SYNC["Stack"]

__all__ = ["Stack"]
