"""Helpers of the DNS tests: a port free for both UDP and TCP, `dig` run
and parsed, and raw DNS messages for the hostile-input tests."""

import socket
import struct
import subprocess

from conftest import free_port


def free_dns_port():
    """A port free on 127.0.0.1 for UDP and TCP alike."""
    return free_port(udp=True)


class DigResult:
    def __init__(self, text):
        self.text = text
        self.status = None
        self.flags = set()
        self.sections = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
        section = None
        for line in text.splitlines():
            if "->>HEADER<<-" in line:
                self.status = line.split("status:")[1].split(",")[0].strip()
            elif line.startswith(";; flags:"):
                self.flags = set(line.split(";")[2].split(":")[1].split())
            elif line.startswith(";; ") and line.endswith(" SECTION:"):
                section = line[3:-len(" SECTION:")]
            elif not line.strip():
                section = None
            elif section in self.sections and not line.startswith(";"):
                self.sections[section].append(line.split())

    @property
    def answers(self):
        """[(name, type, value)] of the answer section."""
        return [(r[0], r[3], " ".join(r[4:])) for r in self.sections["ANSWER"]]

    @property
    def authority(self):
        return [(r[0], r[3], " ".join(r[4:])) for r in self.sections["AUTHORITY"]]

    def __repr__(self):
        return f"<dig {self.status} {self.answers} {self.authority}>"


def dig(port, name, rtype="A", tcp=False):
    """dig @127.0.0.1 -p port [+tcp] name rtype, bounded: one try, 3 s."""
    args = ["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=3", "+norecurse", name, rtype]
    if tcp:
        args.insert(4, "+tcp")
    out = subprocess.run(args, capture_output=True, text=True, timeout=20)
    result = DigResult(out.stdout)
    assert result.status, f"dig got no answer: {out.stdout}{out.stderr}"
    return result


def encode_name(name):
    out = b""
    for label in name.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, rtype=1, qid=0x4242, flags=0x0100):
    return struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 0) + encode_name(name) + struct.pack(">HH", rtype, 1)


def udp_exchange(port, data, timeout=1.0):
    """Sends one datagram; returns the answer's bytes, or None when none
    comes within timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def rcode(answer):
    return answer[3] & 0x0F


def qid(answer):
    return struct.unpack(">H", answer[:2])[0]
