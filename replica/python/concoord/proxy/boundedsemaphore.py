"""BoundedSemaphore proxy (BoundedSemaphore(count=1): releasing above the initial count is a ValueError.)."""

from .._proxies import SYNC

BoundedSemaphore = SYNC["BoundedSemaphore"]

__all__ = ["BoundedSemaphore"]
