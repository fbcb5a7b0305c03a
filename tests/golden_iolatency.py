"""The two histograms in iolatency-compat.md's golden examples (from
perf-tools' example file), shared by the output and iolatency tests."""

BANNER_1 = "Tracing block I/O. Output every 1 seconds. Ctrl-C to end.\n"

HISTOGRAM_1 = """\
  >=(ms) .. <(ms)   : I/O      |Distribution                          |
       0 -> 1       : 4381     |######################################|
       1 -> 2       : 9        |#                                     |
       2 -> 4       : 5        |#                                     |
       4 -> 8       : 0        |                                      |
       8 -> 16      : 1        |#                                     |
"""

HISTOGRAM_2 = """\
  >=(ms) .. <(ms)   : I/O      |Distribution                          |
       0 -> 1       : 1913     |######################################|
       1 -> 2       : 438      |#########                             |
       2 -> 4       : 100      |##                                    |
       4 -> 8       : 145      |###                                   |
       8 -> 16      : 43       |#                                     |
      16 -> 32      : 43       |#                                     |
      32 -> 64      : 1        |#                                     |
"""
