"""report.html: one self-contained page per run, built from its manifest, rejection table and shard parquets."""
