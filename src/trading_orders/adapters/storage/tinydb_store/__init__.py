"""The default order store: a JSON-lines order log, its trades, position snapshots and an index, in files."""
