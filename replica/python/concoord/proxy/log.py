"""Log proxy (Log(): a list of entries.)."""

from .._proxies import SYNC

Log = SYNC["Log"]

__all__ = ["Log"]
