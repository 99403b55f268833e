"""RLock proxy (RLock(): reentrant, owned by the client's session.)."""

from .._proxies import SYNC

RLock = SYNC["RLock"]

__all__ = ["RLock"]
