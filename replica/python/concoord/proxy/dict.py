"""Dict proxy (Dict(): a replicated map with compare-and-set.)."""

from .._proxies import SYNC

Dict = SYNC["Dict"]

__all__ = ["Dict"]
