"""ScreenHeader: a screen with a header can be popped at any moment of its mounting."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.screen import Screen

from vramtui.tui.widgets.header import ScreenHeader


class Titled(Screen[None]):
    def compose(self) -> ComposeResult:
        yield ScreenHeader()

    def on_mount(self) -> None:
        self.sub_title = "a run"


def test_popping_a_screen_while_its_header_mounts_is_safe() -> None:
    # Textual's own Header raises NoMatches here (a title update queued, its title gone).
    app: App[None] = App()

    async def scenario() -> None:
        async with app.run_test() as pilot:
            for ticks in range(40):
                app.push_screen(Titled())
                for _ in range(ticks):
                    await asyncio.sleep(0)
                app.pop_screen()
            await pilot.pause()
            assert app.is_running

    asyncio.run(scenario())
    assert app.return_code is None


def test_the_header_shows_the_screen_title() -> None:
    app: App[None] = App()
    app.title = "vramtui"

    async def scenario() -> None:
        async with app.run_test() as pilot:
            await app.push_screen(Titled())
            await pilot.pause()
            assert "vramtui" in str(app.screen.query_one("HeaderTitle").render())
            assert "a run" in str(app.screen.query_one("HeaderTitle").render())

    asyncio.run(scenario())
