"""Data preparation: the built-in demo corpus (and, later, any audio in)."""
