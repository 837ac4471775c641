#!/usr/bin/env python3
"""Reference implementation of knockd's rotating sequences (knockd.conf(5), Sequence_Secret).

Prints the ports of a door's current window, e.g. to send with `knock HOST p1 p2 p3`:
    knock_rotate.py /path/door.key ssh [--length 3] [--period 30] [--ports 1024-65535]
Standard library only. Checked against the derivation's test vectors (knock_common::rotate) by the test suite.
"""
import argparse, base64, hashlib, hmac, ipaddress, struct, time

def load_key(path):
    with open(path) as f:
        line = next(l.strip() for l in f if l.strip() and not l.strip().startswith("#"))
    text = "".join(c for c in line if c not in " \t=").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))

def derive(key, door, window, length, lo, hi, bind=None):
    msg = b"knock-seq-v1\0" + door.encode() + b"\0" + struct.pack(">Q", window)
    if bind:
        msg += ipaddress.ip_address(bind).packed
    n, ports, i = hi - lo + 1, [], 0
    while len(ports) < min(length, n):
        block = hmac.new(key, msg + struct.pack(">I", i), hashlib.sha256).digest()
        for (v,) in struct.iter_unpack(">H", block):
            port = lo + v % n
            if v < 65536 - 65536 % n and port not in ports and len(ports) < length:
                ports.append(port)
        i += 1
    return ports

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("keyfile"); p.add_argument("door")
    p.add_argument("--length", type=int, default=3); p.add_argument("--period", type=int, default=30)
    p.add_argument("--ports", default="1024-65535"); p.add_argument("--source-address")
    p.add_argument("--window", type=int, help="window number (default: the current one)")
    p.add_argument("--next", action="store_true", help="the window after the current one")
    a = p.parse_args()
    lo, hi = (int(x) for x in a.ports.split("-"))
    t = a.window if a.window is not None else int(time.time()) // a.period + a.next
    print(",".join(map(str, derive(load_key(a.keyfile), a.door, t, a.length, lo, hi, a.source_address))))
