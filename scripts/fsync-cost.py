#!/usr/bin/env python3
"""What one small durable write costs on a file system: 200-byte writes each followed by
fdatasync, appended to a growing file or written over a file's existing bytes (as a recycled
inbox log segment is). Prints wall time, process CPU and voluntary context switches per pair.

usage: scripts/fsync-cost.py DIR [N]   (run it pinned, e.g. under `taskset -c 0`)
"""
import os
import resource
import sys
import time


def run(path, over, n):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        if over:
            os.write(fd, b"\xab" * (n * 200 + 4096))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        for _ in range(n):
            os.write(fd, b"x" * 200)
            os.fdatasync(fd)
        wall, r1 = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.unlink(path)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    print(
        f"{'over  ' if over else 'append'} wall {wall / n * 1e6:7.1f} us  cpu {cpu / n * 1e6:6.1f} us"
        f"  voluntary switches {(r1.ru_nvcsw - r0.ru_nvcsw) / n:.2f}"
    )


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    path = os.path.join(sys.argv[1], "fsync-cost.tmp")
    for _ in range(2):
        run(path, False, n)
        run(path, True, n)


if __name__ == "__main__":
    main()
