"""Counter proxy (Counter(value=0): an integer.)."""

from .._proxies import SYNC

Counter = SYNC["Counter"]

__all__ = ["Counter"]
