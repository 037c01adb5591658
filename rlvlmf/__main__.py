import sys

from rlvlmf.cli import main

sys.exit(main())
