"""The thumbnail grid of Explore and Concepts: each tile shows a sample, its prediction and its labels, with a
select box for bulk actions and one-click labelling. The page decides what the buttons do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import streamlit as st

__all__ = ["LABEL_NAMES", "Tile", "pick_key", "sample_grid"]

LABEL_NAMES = {1: "artifact", 0: "clean"}
_BADGE = {1: ":red-badge[artifact]", 0: ":green-badge[clean]", None: ":gray-badge[unlabelled]"}


@dataclass(frozen=True)
class Tile:
    sample_id: str
    png: bytes
    caption: str
    label: int | None  # the active concept's label
    others: str = ""  # labels of the other concepts, one line


def sample_grid(
    tiles: Sequence[Tile],
    *,
    key: str,
    on_label: Callable[[str, int], None],
    selectable: bool = True,
    columns: int = 6,
) -> list[str]:
    """Tiles in a responsive grid; returns the ids of the tiles whose select box is ticked (their widget keys are
    `pick_key(key, sample_id)`; a tick survives paging while the user stays on the page). `on_label(sample_id,
    label)` runs when a tile's artifact/clean button is clicked."""
    grid = st.grid(columns, min_column_width=170, border=True, key=f"{key}_grid")
    picked = []
    for tile in tiles:
        with grid.cell():
            st.image(tile.png, caption=tile.caption, width="stretch")
            st.markdown(_BADGE[tile.label] + (f"  \n:small[{tile.others}]" if tile.others else ""))
            if selectable and st.checkbox("select", key=pick_key(key, tile.sample_id), persist_state="page"):
                picked.append(tile.sample_id)
            row = st.container(horizontal=True, gap="small")
            for value, icon in ((1, ":material/flag:"), (0, ":material/check:")):
                row.button(
                    LABEL_NAMES[value],
                    key=f"{key}_{LABEL_NAMES[value]}_{tile.sample_id}",
                    icon=icon,
                    type="tertiary",
                    on_click=on_label,
                    args=(tile.sample_id, value),
                    disabled=tile.label == value,
                    help=f"mark {tile.sample_id} as {LABEL_NAMES[value]}",
                )
    return picked


def pick_key(key: str, sample_id: str) -> str:
    """The session-state key of a tile's select box."""
    return f"{key}_pick_{sample_id}"
