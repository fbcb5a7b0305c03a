"""kerntrace backends: each imports kerntrace.core only, never another backend
or a tool plugin."""
