"""The built-in tool plugins.  Each tool module is a plugin of its own,
named by an entry point in the `kerntrace.plugins` group (setup.cfg) as a
third-party tool is, and imports only kerntrace.core.api."""
