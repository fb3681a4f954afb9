"""The operator console: a browser dashboard served at `/`, built on the public API only."""
