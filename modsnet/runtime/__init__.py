"""Code every service shares: server bootstrap, client channels, deadlines, config helpers, metrics."""
