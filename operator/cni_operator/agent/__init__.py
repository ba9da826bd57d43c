"""agent layer (see ../shared/DESIGN.md)."""
