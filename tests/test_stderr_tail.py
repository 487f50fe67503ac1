"""A crashed child's stderr as a failure message quotes it: its words, not its progress bars."""

from __future__ import annotations

from vramtui.measure.stderr_tail import last_lines

BAR = (
    "Loading weights:   0%|          | 0/36 [00:00<?, ?it/s]\r"
    "Loading weights:  50%|#####     | 18/36 [00:00<00:00, 170.2it/s]\r"
    "Loading weights: 100%|██████████| 36/36 [00:00<00:00, 9363.45it/s]\n"
)


def test_progress_bar_frames_are_left_out() -> None:
    text = "starting\n" + BAR + "Traceback (most recent call last):\nRuntimeError: boom\n"
    assert last_lines(text, 3) == "starting\nTraceback (most recent call last):\nRuntimeError: boom"


def test_a_tail_of_nothing_but_bars_is_empty() -> None:
    assert last_lines(BAR + BAR, 3) == ""
    assert last_lines("", 3) == ""


def test_a_line_redrawn_with_carriage_returns_is_read_as_the_terminal_shows_it() -> None:
    assert last_lines("step 1\rstep 2\rstep 3\nnext\n", 2) == "step 3\nnext"


def test_colour_codes_and_an_unfinished_bar_are_dropped() -> None:
    text = "\x1b[31merror: out of cheese\x1b[0m\n  7%|▋         | 3/45 [00:01<00:14,  2.9it/s]"
    assert last_lines(text, 3) == "error: out of cheese"


def test_lines_that_only_mention_percent_are_kept() -> None:
    assert last_lines("used 95% of the limit\n", 3) == "used 95% of the limit"
