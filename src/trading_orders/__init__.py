"""trading-orders: decides strategy orders per user and records them durably."""
