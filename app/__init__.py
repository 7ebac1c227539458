"""The Textual terminal UI: a library of documents and a chat with each.

`app.app.create_app` builds it over the `engine.assistant.Assistant` facade, which is all
it talks to; blocking work runs in thread workers that only post messages. `longread` with
no arguments (and `longread tui`) opens it.
"""
