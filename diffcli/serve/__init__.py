"""`diffcli serve`: one loaded model behind OpenAI- and A1111-compatible HTTP APIs.

One process, one pipeline, one worker thread that owns it; requests are parsed and bounded at the
door, turned into the same resolved items the CLI makes, and gathered into batches. FastAPI and
uvicorn (the `serve` extra) are imported only by this package, never by the rest of the CLI.
"""
