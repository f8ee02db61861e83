"""The pipeline config (schema, loader, overrides) and every choice-valued setting (`choices.py`)."""
