"""Run directories: atomic artifact writes, stage manifests, freshness checks."""
