"""Performance estimators. Each is fitted on a graph snapshot and predicts every model's score."""
