"""File I/O that every layer may use and that knows no format: atomic outputs (`atomic`)."""
