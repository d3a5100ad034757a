import sys

from adafocus.apps.cli import main

sys.exit(main())
