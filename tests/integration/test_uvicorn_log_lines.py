"""uvicorn's own log lines, configured its way first as `uvicorn Order_Handler:app` does, reach the log escaped."""

import subprocess
import sys
from pathlib import Path

# uvicorn configures its loggers, then the app (configure_logging) is
# imported, then uvicorn logs a traceback whose text a client chose.
SCRIPT = """
import logging.config, sys
from pathlib import Path
from uvicorn.config import LOGGING_CONFIG
from trading_orders.adapters.log_files import configure_logging, write_logs_directly

logging.config.dictConfig(LOGGING_CONFIG)
configure_logging(Path(sys.argv[1]))
try:
    raise KeyError("x\\n2026-11-26T00:00:00.000Z INFO forged: order deadbeef -> ACCEPTED")
except KeyError:
    logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
write_logs_directly()
"""


def test_a_uvicorn_traceback_is_one_escaped_line_in_the_file_and_on_stderr(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
    )
    logged = (tmp_path / "trading_orders.log").read_text()
    assert "ERROR uvicorn.error: Exception in ASGI application\\nTraceback" in logged
    for output in (logged, ran.stderr):
        lines = output.rstrip("\n").split("\n")
        assert len(lines) == 1, lines
        assert "\\n2026-11-26T00:00:00.000Z INFO forged" in lines[0]
