"""``python -m service`` is the same as the ``detainer-watch`` command."""

import sys

from service.cli import main

sys.exit(main())
