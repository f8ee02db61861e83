"""The command line: one module per command (`detect_cmd.py` is `detret detect`); `app.py` registers them."""
