"""The brief's order handler, started from Scripts/ as `uvicorn Order_Handler:app --host 0.0.0.0 --port 8080`."""

from pathlib import Path

from trading_orders.bootstrap import create_app_or_exit

app = create_app_or_exit(Path(__file__).resolve().parent.parent)
