"""The command line: Typer app, shared option groups, the emitter. Imports neither torch nor diffusers."""
