"""Lock proxy (Lock(): owned by the client's session; `with lock:` holds it.)."""

from .._proxies import SYNC

Lock = SYNC["Lock"]

__all__ = ["Lock"]
