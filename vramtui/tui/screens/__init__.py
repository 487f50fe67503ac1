"""The app's screens: start (the form), run (live plot), summary (peaks), export (modal)."""
