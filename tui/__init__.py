"""Valkyrie operator console (Textual): ``valkyrie-routing console`` or ``python -m tui``."""
