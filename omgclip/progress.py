"""The one progress-bar helper: tqdm when enabled (orchestrators only), else nothing."""

from __future__ import annotations

from typing import Iterable


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", enabled: bool = True):
    """A tqdm bar (to stderr, cleared when done) or, when disabled, a silent stand-in with
    the same ``update`` / ``close`` / iteration interface."""
    if enabled:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
    return _Silent(iterable)


class _Silent:
    def __init__(self, iterable: Iterable | None):
        self._iterable = iterable if iterable is not None else ()

    def __iter__(self):
        return iter(self._iterable)

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
