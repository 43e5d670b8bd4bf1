"""The brief's order handler, started from Scripts/ as `uvicorn Order_Handler:app --host 0.0.0.0 --port 8080`."""

import os
import sys
from pathlib import Path

from trading_orders.bootstrap import create_app_or_exit, uvicorn_host

# The host uvicorn was told to serve on, so that start-up can warn of one
# other machines reach with no API key set.
app = create_app_or_exit(Path(__file__).resolve().parent.parent, uvicorn_host(sys.argv, os.environ))
