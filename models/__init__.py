"""The model catalog: GGUF metadata read into ModelProfiles, the bundled default, registered models.

Imports no other longread package and never imports llama_cpp: profiles come from reading
the GGUF header directly, so listing models costs no model load.
"""
