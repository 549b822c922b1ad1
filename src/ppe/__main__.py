"""``python -m ppe``: the same as the ``ppe`` console script."""

import sys

from ppe.cli import main

sys.exit(main())
