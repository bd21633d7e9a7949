"""``python -m hookbridge``: the same as the ``hookbridge`` command."""

from ._cli import main

raise SystemExit(main())
