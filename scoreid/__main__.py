"""``python -m scoreid`` runs the ``scoreid`` command line."""

from scoreid.cli import main

raise SystemExit(main())
