"""``python -m router``: the command line, as the ``router`` command."""

from router.cli.main import main

raise SystemExit(main())
