"""`python -m diffcli` entry point (also what `accelerate launch -m diffcli` runs)."""

from diffcli.cli.app import main

if __name__ == "__main__":
    main()
