"""Widgets that draw a Session: the memory plot, the series table, the status line."""
