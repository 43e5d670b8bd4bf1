"""The brief's profile generator: writes ../Jsons/user_profile.json (see --help)."""

import sys
from pathlib import Path

from trading_orders.tools.profile_generator import main

JSONS = Path(__file__).resolve().parent.parent / "Jsons"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], raw_details=JSONS / "raw_details.json", profile_path=JSONS / "user_profile.json"))
