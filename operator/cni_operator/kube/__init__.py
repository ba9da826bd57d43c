"""kube layer (see ../shared/DESIGN.md)."""
