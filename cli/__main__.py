"""``python -m cli`` runs the ``scoreid`` command line."""

from cli.main import main

raise SystemExit(main())
