"""The four ModsNet services. Each has the same shape: config, core (no grpc), servicer, server, metrics."""
