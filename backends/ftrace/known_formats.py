"""The stored kernel format files, as the ftrace backend's tests and tools
have always imported them; they belong to the model (core.known_formats,
data in core/formats/)."""

from kerntrace.core.known_formats import (  # noqa: F401  (re-exported)
    ERAS, FORMATS, HEADER_EVENT, HEADER_PAGE, candidates, event_format)
