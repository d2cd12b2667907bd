"""Generated from protos/modsnet/v1 by `make protos`; do not edit."""
