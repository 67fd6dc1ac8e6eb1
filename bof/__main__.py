import sys

from bof.cli import main

sys.exit(main())
