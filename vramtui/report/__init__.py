"""How a run reads: text tables, CSV/JSON, the bench table, the breakdown, the forecast."""
