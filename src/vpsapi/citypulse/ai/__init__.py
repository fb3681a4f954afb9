"""AI chat through external model providers, and agent swarms run as jobs (seed 004)."""
