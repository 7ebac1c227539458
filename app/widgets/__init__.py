"""The widgets of the Textual app."""
