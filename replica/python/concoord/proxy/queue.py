"""Queue proxy (Queue(maxsize=0): FIFO; put/get raise Full/Empty as in ConCoord 1.1, put(item, True)/get(True) wait instead.)."""

from .._proxies import SYNC

Queue = SYNC["Queue"]

__all__ = ["Queue"]
