"""Recommender service: estimates P(d, m) for every model of a library and returns the top-k."""
