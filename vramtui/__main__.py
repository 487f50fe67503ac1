from __future__ import annotations

from vramtui.cli import main

raise SystemExit(main())
