"""The brief's order producer: 300 random orders, one a second, to port 8080 (see --help).

It reads ../Jsons/raw_details.json as the brief's does, and draws the instruments among those
../Jsons/user_profile.json trades, so a visible share is accepted (--brief: any instrument).
"""

import sys
from pathlib import Path

from trading_orders.tools.order_producer import main

JSONS = Path(__file__).resolve().parent.parent / "Jsons"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], raw_details=JSONS / "raw_details.json", profile_path=JSONS / "user_profile.json"))
