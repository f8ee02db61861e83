"""`python -m detret ...`: the same as the `detret` command."""
from .cli.app import main

if __name__ == "__main__":
    main()
