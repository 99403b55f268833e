"""Bank proxy (Bank(): accounts with balances.)."""

from .._proxies import SYNC

Bank = SYNC["Bank"]

__all__ = ["Bank"]
