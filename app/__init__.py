"""The Textual terminal UI: not built yet (no open issue asks for it).

When it is, it talks only to `engine.assistant.Assistant`, runs blocking work in thread
workers that post messages, and `longread` with no arguments opens it. Until then `make run`
shows the CLI.
"""
