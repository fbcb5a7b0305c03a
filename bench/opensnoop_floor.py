#!/usr/bin/env python3
"""The floor of the Python route: what reading the ftrace buffer costs
before any pairing or printing (run by bench/opensnoop_load.py as the
floor-* tracers, in the cgroup that measures them; not a test).

    opensnoop_floor.py MODE ROOT BUFFER SYSTEM/EVENT=FIELD ...

reads every per_cpu/cpuN/trace_pipe_raw of the tracefs BUFFER (an
instance the load bench set up with the events kerntrace's ftrace backend
uses for opensnoop here) as kerntrace's session does (non-blocking page
reads, the same short sleep when the buffers are empty), until SIGINT,
then prints on stdout "floor MODE: N entries, P pages".  MODE:

    read     read the pages only (the system calls and Python's loop)
    walk     read, and walk each page's entries with kerntrace's decoder
             (rawparse.RawDecoder.decode_page_into with nothing bound: the
             entry headers only)
    decode   read, and decode the fields opensnoop reads (FIELD of each
             SYSTEM/EVENT: the uprobe's path, the exit's ret) into a
             callback that only counts

Whatever kerntrace does beyond `decode` (time ordering, pairing, records,
formatting, writing) is on top of these figures, so the decode floor
against the text pipeline's cost bounds the ratio the Python route can
reach.
"""

import os
import signal
import sys
import time

from kerntrace.backends.ftrace.rawparse import RawDecoder
from kerntrace.backends.ftrace.readers import MAX_PAGES_PER_ROUND, RawReader, cpus, \
    read_page_size
from kerntrace.backends.ftrace.session import POLL_S
from kerntrace.core import tracefs


def main(argv):
    mode, root, buffer_path = argv[:3]
    wanted = [a.split("=") for a in argv[3:]]
    hp = tracefs.read_text(os.path.join(root, "events", "header_page"))
    he = tracefs.read_text(os.path.join(root, "events", "header_event"))
    formats = {}
    names = {}
    for ev, field in wanted:
        system, event = ev.split("/")
        fmt = tracefs.read_format(root, system, event)
        formats[fmt.id] = fmt
        names[fmt.id] = (field,)
    decoder = RawDecoder(hp, he, formats)
    counted = [0]

    def count(ts, cpu, values):
        counted[0] += 1

    binding = {} if mode != "decode" else decoder.compile_sinks(
        {ev_id: (names[ev_id], count) for ev_id in formats})
    page = read_page_size(buffer_path, hp)
    readers = []
    for cpu in cpus(buffer_path):
        r = RawReader(cpu, os.path.join(buffer_path, "per_cpu", "cpu%d" % cpu,
                                        "trace_pipe_raw"), page)
        r.open()
        readers.append(r)
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    pages = entries = 0
    decode = decoder.decode_page_into
    print("ready", flush=True)
    while True:
        got = 0
        for r in readers:
            for data in r.read_pages(MAX_PAGES_PER_ROUND):
                got += 1
                if mode != "read":
                    decode(data, r.cpu, binding)
        pages += got
        if not got:
            if stop:
                break
            time.sleep(POLL_S)
    if mode == "walk":
        entries = decoder.unknown
    elif mode == "decode":
        entries = counted[0] + decoder.unknown
    print("floor %s: %d entries, %d pages" % (mode, entries, pages), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
