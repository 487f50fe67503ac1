"""The Textual app. Importing this package imports nothing heavy; `vramtui.tui.app` does."""
