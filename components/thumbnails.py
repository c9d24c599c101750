"""Images as data URLs, for image columns in tables and plotly hover cards."""

from __future__ import annotations

import base64

__all__ = ["data_url"]


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
