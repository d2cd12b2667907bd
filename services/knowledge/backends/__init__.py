"""Knowledge stores: `sqlite` (one file, the embedded default); `redis` is the production store."""
