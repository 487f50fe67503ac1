"""Profiling the user's own program: hooks inside it, its process, and the recorder.

`hooks` runs inside the program (torch and transformers); `child` is the
program's process's first code; `process` and `recorder` are the parent's side
and import neither torch nor transformers.
"""
