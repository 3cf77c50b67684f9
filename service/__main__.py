"""``python -m service``: run the inference service (same flags as ``anomaly serve``)."""

import sys

from service.cli import main

sys.exit(main())
