"""Textual's caches that outlive the screens they served."""

from __future__ import annotations


def release_widget_caches() -> None:
    """Let the widgets of screens already closed go.

    Textual's StylesCache.get_inner_outer is an lru_cache(1024) on an instance
    method: it keeps up to 1024 widgets' StylesCache, with every line they cached,
    alive after their screens are gone (~70 widgets, ~1.5 MB, a run). Clearing it
    when screens close costs a few re-renders of the screen in view.
    """
    from textual._styles_cache import StylesCache

    clear = getattr(StylesCache.get_inner_outer, "cache_clear", None)
    if clear is not None:
        clear()
