"""Progress bars: shown on a terminal, quiet otherwise (tqdm's disable=None), or forced by config."""

from __future__ import annotations

from tqdm import tqdm


def bar(progress: bool | None, **kwargs) -> tqdm:
    return tqdm(disable=None if progress is None else not progress, dynamic_ncols=True, **kwargs)
