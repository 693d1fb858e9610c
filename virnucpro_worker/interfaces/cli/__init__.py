"""The `virnucpro` command line: one module per group of commands (local.py, database.py,
service.py, tools.py), their shared options (options.py) and helpers (common.py), and the entry
point (main.py).

Each command checks what it can in milliseconds (options, the output folder, the input) before
anything slow (importing torch, loading models). Exit status: 0 success, 1 a failure that is not
the user's (a full disk, a job that failed), 2 a problem the user can fix (one line on stderr),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
