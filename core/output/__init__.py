"""The output layer: every printer a tool may choose, shared by both backends."""
