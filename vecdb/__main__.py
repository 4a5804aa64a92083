import sys

from vecdb.cli import main

sys.exit(main())
