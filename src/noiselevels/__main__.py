import sys

from noiselevels.cli import main

sys.exit(main())
