"""Event format files as kernels of several eras print them, stored as data
under core/formats/ (see its README for where each era's files come from).

Replay decodes a plain `cat trace` file from another host (whose format
files it does not have) with these: each candidate's print fmt is tried on
that event's first line.  Tests build fake tracefs trees from them.

    FORMATS[era][(system, event)]        the `format` file text
    HEADER_PAGE[era], HEADER_EVENT[era]  events/header_page, header_event
    event_format(era, system, event)     the parsed EventFormat, or None
    candidates(system, event)            parsed EventFormats, newest era first

The files are read with pkgutil, so they load the same from a source
checkout, an installed package and the single-file zipapp.
"""

import pkgutil

from .tracefs import parse_format

# formats/INDEX lists every event file as "era system event", oldest era
# first; the tree mirrors tracefs's events/ directory per era.
_PACKAGE = __name__.rpartition(".")[0]


def _data(*parts):
    data = pkgutil.get_data(_PACKAGE, "/".join(("formats",) + parts))
    return data.decode("utf-8")


def _load():
    eras, formats, header_page, header_event = [], {}, {}, {}
    for line in _data("INDEX").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        era, system, event = line.split()
        if era not in formats:
            eras.append(era)
            formats[era] = {}
            header_page[era] = _data(era, "header_page")
            header_event[era] = _data(era, "header_event")
        formats[era][(system, event)] = _data(era, system, event, "format")
    return tuple(eras), formats, header_page, header_event


ERAS, FORMATS, HEADER_PAGE, HEADER_EVENT = _load()

_parsed = {}


def event_format(era, system, event):
    """The parsed EventFormat of one era, or None."""
    key = (era, system, event)
    if key not in _parsed:
        text = FORMATS.get(era, {}).get((system, event))
        _parsed[key] = parse_format(text, system) if text else None
    return _parsed[key]


def candidates(system, event):
    """Every known format of an event, newest era first (a new list each
    call; the EventFormat objects in it are shared: do not modify them)."""
    out = []
    for era in reversed(ERAS):
        f = event_format(era, system, event)
        if f is not None:
            out.append(f)
    return out
