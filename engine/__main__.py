"""`python -m engine` is the same as the `trade-engine` command."""

from engine.cli import main

raise SystemExit(main())
