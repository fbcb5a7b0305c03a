"""kerntrace core: the measurement model, result types, plugin host, backend
selector, runner and output layer shared by every tool and backend."""

__version__ = "0.1.0"
