"""The workload of sleeper.rec: prints its thread id, waits for a line on
stdin, then sleeps 1 ms N times and runs 2 ms after each wakeup, so its
thread is woken N + 1 times (the release, and each sleep)."""

import os
import sys
import time

print(os.getpid(), flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    time.sleep(0.001)
    end = time.perf_counter() + 0.002
    while time.perf_counter() < end:
        pass
