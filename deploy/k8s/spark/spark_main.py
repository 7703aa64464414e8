"""spark-submit's entry in the scoring image: `python -m train` with the application's arguments.

spark-submit runs a Python application from a `.py` file, not a module.
"""

import sys

from train.__main__ import main

sys.exit(main())
