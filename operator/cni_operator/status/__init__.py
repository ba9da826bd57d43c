"""status layer (see ../shared/DESIGN.md)."""
