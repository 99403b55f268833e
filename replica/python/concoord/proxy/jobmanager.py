"""JobManager proxy (JobManager(): a list of scheduled jobs.)."""

from .._proxies import SYNC

JobManager = SYNC["JobManager"]

__all__ = ["JobManager"]
