"""Splitting ftrace text into lines in bounded memory.

The kernel formats each event into one trace_seq before copying it out
(include/linux/trace_seq.h): a buffer of PAGE_SIZE in older kernels, at most
256 KiB (the largest page size Linux supports, on hexagon and powerpc 44x),
and 8 KiB (TRACE_SEQ_SIZE) in newer ones.  No line the kernel prints is
longer, so a longer one (a damaged or foreign file, a file without any
newline) is not a trace line: it is counted and skipped while it is read,
never held whole in memory.
"""

# One line as the kernel can print it: the largest trace_seq, header and
# payload together.
MAX_LINE_BYTES = 256 * 1024
# What one read() asks for.
CHUNK_BYTES = 64 * 1024


class LineSplitter(object):
    """Bytes in chunks -> complete lines (bytes, without the newline).

        s = LineSplitter()
        lines = s.feed(chunk)        # lines completed by this chunk
        lines = s.finish()           # the last line, if not newline-ended

    A line longer than max_line bytes is dropped as it arrives (the
    splitter then holds nothing of it) and counted in `overlong`."""

    def __init__(self, max_line=MAX_LINE_BYTES):
        self.max_line = max_line
        self.overlong = 0
        self._parts = []            # the unfinished line, in the pieces it came in
        self._size = 0
        self._skipping = False      # inside an overlong line: drop up to its newline

    def feed(self, data):
        lines = data.split(b"\n")
        tail = lines.pop()
        if lines:
            # the first piece ends the line begun in earlier chunks
            if self._skipping:
                self._skipping = False
                del lines[0]
            elif self._parts:
                self._parts.append(lines[0])
                lines[0] = b"".join(self._parts)
            self._parts = []
            self._size = 0
            long_ones = [i for i, line in enumerate(lines) if len(line) > self.max_line]
            for i in reversed(long_ones):
                del lines[i]
            self.overlong += len(long_ones)
        if not self._skipping and tail:
            self._size += len(tail)
            if self._size > self.max_line:
                self.overlong += 1
                self._parts = []
                self._size = 0
                self._skipping = True
            else:
                self._parts.append(tail)
        return lines

    def finish(self):
        """The unterminated last line (a file need not end in a newline)."""
        tail = b"".join(self._parts)
        self._parts = []
        self._size = 0
        self._skipping = False
        return [tail] if tail else []


def file_lines(f, max_line=MAX_LINE_BYTES, chunk=CHUNK_BYTES, splitter=None):
    """Lines of binary file object f, read `chunk` bytes at a time; overlong
    lines are counted in `splitter.overlong` (pass one to read the count)."""
    splitter = splitter or LineSplitter(max_line)
    while True:
        data = f.read(chunk)
        if not data:
            break
        for line in splitter.feed(data):
            yield line
    for line in splitter.finish():
        yield line
