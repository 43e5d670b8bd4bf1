"""Long reliability runs: `python -m tests.reliability.crashloop --cycles 1000` from the project root."""
