"""MeshMembership proxy (MeshMembership(): named groups of nodes with epochs.)."""

from .._proxies import SYNC

MeshMembership = SYNC["MeshMembership"]

__all__ = ["MeshMembership"]
