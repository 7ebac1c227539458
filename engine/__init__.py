"""The engine: the assistant facade, router, context planning, llama.cpp and answer strategies.

`engine.assistant.Assistant` is the one composition root the CLI and the TUI talk to.
"""
