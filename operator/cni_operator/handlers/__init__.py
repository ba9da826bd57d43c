"""handlers layer (see ../shared/DESIGN.md)."""
