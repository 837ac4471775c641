#!/usr/bin/env python3
"""Write the seed corpus under fuzz/corpus/<target>/ (small files only).

Run from anywhere: `python3 fuzz/make_seeds.py`. Existing seeds with the
same names are overwritten; other files in the corpus directories (for
example regression inputs of fixed crashes) are left alone.
"""

import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
FIXTURES = os.path.join(HERE, "..", "integration", "tests", "fixtures")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- frames -----------------------------------------------------------------

SRC4 = bytes([10, 0, 0, 2])
DST4 = bytes([10, 0, 0, 1])
SRC6 = bytes.fromhex("fd000000000000000000000000000002")
DST6 = bytes.fromhex("fd000000000000000000000000000001")


def tcp(port, flags=0x02, doff=5, opts=b""):
    return (struct.pack("!HHIIBBHHH", 40000, port, 1, 0, doff << 4, flags, 8192, 0, 0)
            + opts)


def udp(port, payload=b"knock"):
    return struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload


def ipv4(proto, l4, opts=b"", frag=0):
    ihl = 5 + len(opts) // 4
    total = ihl * 4 + len(l4)
    return (struct.pack("!BBHHHBBH", 0x40 | ihl, 0, total, 0x1234, frag, 64, proto, 0)
            + SRC4 + DST4 + opts + l4)


def ipv6(nxt, payload):
    return struct.pack("!IHBB", 0x60000000, len(payload), nxt, 64) + SRC6 + DST6 + payload


def ext(nxt, body=b"\0" * 6):
    # Generic extension header: next header, length in 8-byte units minus 1.
    return bytes([nxt, (len(body) + 2) // 8 - 1]) + body


def frag6(nxt, offset=0):
    return struct.pack("!BBHI", nxt, 0, offset << 3, 0xabcd)


PACKETS = {
    "v4-tcp-syn": ipv4(6, tcp(7000)),
    "v4-tcp-fin-opts": ipv4(6, tcp(8000, 0x01, 6, b"\x02\x04\x05\xb4"), b"\x01\x01\x01\x00"),
    "v4-udp": ipv4(17, udp(9000)),
    "v4-icmp": ipv4(1, b"\x08\x00\xf7\xff\0\0\0\0"),
    "v4-first-frag": ipv4(6, tcp(7000), frag=0x2000),
    "v4-later-frag": ipv4(6, tcp(7000), frag=0x0010),
    "v6-tcp-syn": ipv6(6, tcp(7000)),
    "v6-udp": ipv6(17, udp(9000)),
    "v6-ext-chain": ipv6(0, ext(43, b"\0" * 6) + ext(60) + frag6(6) + tcp(7000)),
    "v6-frag-later": ipv6(44, frag6(17, 5) + udp(9000)),
}


def ether(ethertype, payload, tags=()):
    hdr = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02"
    for tpid, vid in tags:
        hdr += struct.pack("!HH", tpid, vid)
    return hdr + struct.pack("!H", ethertype) + payload


def sll(ethertype, payload):
    # packet type, ARPHRD, address length, 8 address bytes, protocol.
    return struct.pack("!HHH", 0, 1, 6) + b"\x02\0\0\0\0\x02\0\0" + struct.pack("!H", ethertype) + payload


def sll2(ethertype, payload):
    # protocol, reserved, ifindex, ARPHRD, packet type, address length, 8 bytes.
    return struct.pack("!HHIHBB", ethertype, 0, 2, 1, 0, 6) + b"\x02\0\0\0\0\x02\0\0" + payload


def ethertype_of(name):
    return 0x86DD if name.startswith("v6") else 0x0800


def write_frames():
    for name, pkt in PACKETS.items():
        et = ethertype_of(name)
        put("decode_ethernet", name, ether(et, pkt))
        put("decode_sll", name, sll(et, pkt))
        put("decode_sll2", name, sll2(et, pkt))
        put("decode_raw_ip", name, pkt)
    v4 = PACKETS["v4-tcp-syn"]
    put("decode_ethernet", "vlan", ether(0x0800, v4, [(0x8100, 5)]))
    put("decode_ethernet", "qinq", ether(0x0800, v4, [(0x88A8, 5), (0x8100, 6)]))
    put("decode_ethernet", "padded", ether(0x0800, PACKETS["v4-udp"]) + b"\0" * 12)
    put("decode_ethernet", "arp", ether(0x0806, b"\0\x01\x08\x00\x06\x04\0\x01" + b"\0" * 20))
    put("decode_sll", "vlan", sll(0x8100, struct.pack("!HH", 5, 0x0800) + v4))
    put("decode_sll2", "vlan", sll2(0x8100, struct.pack("!HH", 5, 0x0800) + v4))
    put("decode_raw_ip", "truncated", v4[:30])


# --- configuration files ------------------------------------------------------

CONFIGS = {
    "full": """[options]
    UseSyslog
    LogFile = /var/log/knockd.log
    PidFile = /run/knockd.pid
    Interface = eth0

[openSSH]
    sequence    = 7000,8000:udp,9000:TCP
    seq_timeout = 5
    tcpflags    = syn,!ack
    command     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
    command_6   = /sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
    Cmd_Timeout = 10
    Stop_Command = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
    Stop_Command_6 =

[router]
    One_Time_Sequences = /etc/knockd/otp
    Target = 192.0.2.1
    Timeout = 30
    Start_Command = logger knock from %IP%
""",
    "errors": """# comment
stray = 1
[options]
    Bogus = 2
[door]
    Sequence = 7000,80x,-1,70000,abc
    Seq_Timeout = 0
    TCPFlags = syn,!syn,foo
    Target = 300.1.1.1
    One_Time_Sequences = /x
[door]
[empty]
""",
    "crlf-bom": "\ufeff[options]\r\n  logfile = /tmp/k.log\r\n[d]\r\n  sequence = 1:udp\r\n",
    "ipv6-target": "[d]\nsequence=1,2,3\ntarget = fd00::1\ncommand = a = b %IP%\n",
}


def write_configs():
    for name, text in CONFIGS.items():
        put("config_parse", name, text)
    for f in sorted(os.listdir(FIXTURES)):
        if f.endswith(".conf"):
            shutil.copyfile(os.path.join(FIXTURES, f),
                            os.path.join(CORPUS, "config_parse", "fixture-" + f[:-5]))


# --- one-time sequence files --------------------------------------------------

OTPS = {
    "generated": " 27195:udp,3362:tcp,61231:tcp\n 4242,5353:udp\n 1:udp\n",
    "partly-used": "# header\n#7000,8000\n\n 80x,9000\n 1000:udp,2000\n 3000",
    "crlf": " 7000,8000\r\n\r\n#9000\r\n 10000:UDP , 20000\r\n",
    "binary": b"\xff\xfe 7000\n\x00\n \xe2\x82\xac,1\n",
}


def write_otps():
    for name, text in OTPS.items():
        put("otp_scan", name, text)


# --- sequence and flag syntax -------------------------------------------------

SYNTAX = {
    "seq-mixed": "7000,8000:udp,9000:TCP",
    "seq-spaces": " 1 , 65535 : udp ,2",
    "seq-bad": "80x,,70000:sctp",
    "flags": "syn,!ack",
    "flags-all": "FIN, syn ,rst,psh,!ack,urg",
    "flags-bad": "syn,!syn,bogus",
}


def write_syntax():
    for name, text in SYNTAX.items():
        put("sequence_syntax", name, text)


if __name__ == "__main__":
    write_frames()
    write_configs()
    write_otps()
    write_syntax()
