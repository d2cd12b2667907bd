"""Offline tools, never imported by serving code: library generators (`zoo`), importers of other groups'
records (`importers`), real backend servers for tests and the local cluster (`devservers`, `localcluster`)
and the protobuf code generator (`protogen`)."""
