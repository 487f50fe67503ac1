"""Comparing and explaining runs: the breakdown, the live forecast, predicted against measured."""
