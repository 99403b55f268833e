"""Membership proxy (Membership(): a set of members.)."""

from .._proxies import SYNC

Membership = SYNC["Membership"]

__all__ = ["Membership"]
