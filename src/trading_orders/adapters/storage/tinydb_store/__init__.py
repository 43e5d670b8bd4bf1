"""The default store: an order log of JSON lines, position snapshots and trades in files of one directory."""
