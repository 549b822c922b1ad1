from ppe.cli import main
import sys

sys.exit(main())
