"""How big the buffers that carry event records to user space are.

Both are counted in pages and must be a power of two of them: the perf
buffer has one per CPU (bcc's page_cnt), the BPF ring buffer is one for
all CPUs (BPF_RINGBUF_OUTPUT's page count; the kernel wants its size a
power-of-two multiple of the page size).  --buffer-kb means KB per CPU on
every backend, so the ring buffer gets CPUs x KB.
"""

import mmap
import os

# Without --buffer-kb: 256 KB per CPU of perf buffer, 2 MB of ring buffer
# (4 KB pages), which keep up with thousands of records a second.
DEFAULT_PERF_PAGES = 64
DEFAULT_RINGBUF_PAGES = 512


def _pow2_pages(nbytes, page_size):
    pages = max(1, -(-nbytes // page_size))
    return 1 << (pages - 1).bit_length()


class BufferSizes(object):
    """perf_pages    page_cnt of each per-CPU perf buffer
    ringbuf_pages    pages of the shared ring buffer"""

    def __init__(self, buffer_kb=None, ncpus=None, page_size=None):
        self.page_size = page_size or mmap.PAGESIZE
        self.requested_kb = buffer_kb
        if buffer_kb is None:
            self.perf_pages, self.ringbuf_pages = DEFAULT_PERF_PAGES, DEFAULT_RINGBUF_PAGES
            return
        ncpus = ncpus or os.cpu_count() or 1
        self.perf_pages = _pow2_pages(buffer_kb * 1024, self.page_size)
        self.ringbuf_pages = _pow2_pages(buffer_kb * 1024 * ncpus, self.page_size)

    def describe(self, output):
        """One line for --explain: the buffer `output` ("perf"/"ringbuf") uses."""
        if output == "ringbuf":
            what = "ring buffer %d KB (shared by all CPUs)" % (self.ringbuf_pages * self.page_size // 1024)
        else:
            what = "perf buffer %d KB per CPU" % (self.perf_pages * self.page_size // 1024)
        how = ("--buffer-kb %d rounded up to a power of two of pages" % self.requested_kb
               if self.requested_kb is not None else "default size")
        return "records reach user space through a %s (%s)" % (what, how)
