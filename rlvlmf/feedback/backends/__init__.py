"""Backend implementations, one module per family.

Nothing here is imported eagerly: ``rlvlmf.feedback.registry`` maps each family name to a
``module:Class`` string and imports the module only when that backend is asked for, so an
optional package that is missing breaks only its own backend.
"""
