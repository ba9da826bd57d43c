"""plan layer (see ../shared/DESIGN.md)."""
