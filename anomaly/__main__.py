import sys

from anomaly.cli import main

sys.exit(main())
