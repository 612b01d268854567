"""`python -m sidecar` runs the command-line interface."""

from sidecar.cli import main

raise SystemExit(main())
