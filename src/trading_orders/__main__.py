"""`python -m trading_orders`: the command line."""

from trading_orders.cli import main

raise SystemExit(main())
