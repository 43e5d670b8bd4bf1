"""Where positions and the order log are kept: files, memory."""
