"""python -m attuned"""

import sys

from attuned.cli.main import main

sys.exit(main())
