"""Many runs as one table: `vramtui bench`'s grid, each cell in a fresh engine process.

`grid` (axes and cells), `runner` (the sweep), `results` (one cell's figures);
`vramtui.report.bench_table` renders them.
"""
