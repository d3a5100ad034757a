import sys

from adafocus.cli import main

sys.exit(main())
