"""Test-only machinery: synthetic event streams, replays, faults raised on purpose."""
