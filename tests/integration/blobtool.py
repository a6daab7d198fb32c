#!/usr/bin/python3
"""tests/integration/blobtool.py - damages the TLS session blobs ('T' keys)
of a cbv cache store, LMDB (through mdb_dump/mdb_load) or Redis (a minimal
RESP client), for t_shared_store.sh.

  blobtool.py lmdb FILE MODE
  blobtool.py redis HOST PORT PREFIX MODE
  blobtool.py ... count          prints how many 'T' blobs there are

MODE: corrupt (one byte flipped: the sum no longer matches), version
(another format version, resealed), oversize (100 kB that start like a
value), badder (the session bytes replaced by garbage, resealed: whole,
but not a session), swap (the value of the session made without
verification copied over the one made with it).  Exit 1 if no blob was
found to damage.
"""
import os
import random
import socket
import subprocess
import sys

BLOB_HEAD = 24


def fnv1a(b):
    h = 2166136261
    for x in b:
        h ^= x
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def reseal(v):
    v = bytearray(v)
    v[-4:] = fnv1a(bytes(v[:-4])).to_bytes(4, "little")
    return bytes(v)


def tls_key(v):
    """The session key a TLS value names (after the blob head), or b''."""
    body = v[BLOB_HEAD:-4]
    return body.split(b"\0", 1)[0] if b"\0" in body else b""


def mangle(vals, mode):
    """vals: {key: value} of 'T' blobs; returns {key: new value}."""
    out = {}
    if mode == "swap":
        nov = [k for k, v in vals.items() if b" noverify " in tls_key(v)]
        ver = [k for k, v in vals.items() if b" verify " in tls_key(v)]
        if nov and ver:
            out[ver[0]] = vals[nov[0]]
        return out
    for k, v in vals.items():
        if mode == "corrupt":
            b = bytearray(v)
            b[len(b) // 2] ^= 0x55
            out[k] = bytes(b)
        elif mode == "version":
            b = bytearray(v)
            b[2] = 9
            out[k] = reseal(b)
        elif mode == "oversize":
            out[k] = b"cv\x01\x42" + os.urandom(100 * 1024)
        elif mode == "badder":
            kl = len(tls_key(v)) + 1
            b = bytearray(v)
            start = BLOB_HEAD + kl
            b[start:-4] = bytes(random.getrandbits(8) for _ in range(len(b) - 4 - start))
            out[k] = reseal(b)
        else:
            sys.exit("unknown mode " + mode)
    return out


def lmdb(path, mode):
    dump = subprocess.run(["mdb_dump", "-n", path], check=True, capture_output=True,
                          text=True).stdout.splitlines()
    head, pairs = [], []
    i = 0
    while dump[i] != "HEADER=END":
        if not dump[i].startswith("db_pagesize="):  # mdb_load 0.9.24 does not know it
            head.append(dump[i])
        i += 1
    i += 1
    while dump[i] != "DATA=END":
        pairs.append((bytes.fromhex(dump[i].strip()), bytes.fromhex(dump[i + 1].strip())))
        i += 2
    vals = {k: v for k, v in pairs if k[:1] == b"T"}
    if mode == "count":
        print(len(vals))
        return 0
    new = mangle(vals, mode)
    if not new:
        return 1
    text = "\n".join(head + ["HEADER=END"])
    for k, v in new.items():
        text += "\n " + k.hex() + "\n " + v.hex()
    text += "\nDATA=END\n"
    subprocess.run(["mdb_load", "-n", path], input=text, check=True, text=True)
    return 0


def resp(sock, *args):
    msg = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        msg += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(msg)
    f = sock.makefile("rb")
    return read_reply(f)


def read_reply(f):
    line = f.readline().rstrip(b"\r\n")
    t, rest = line[:1], line[1:]
    if t in (b"+", b"-", b":"):
        return rest
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if t == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    raise ValueError(line)


def redis(host, port, prefix, mode):
    s = socket.create_connection((host, int(port)))
    keys = resp(s, "KEYS", prefix + "T:*")
    vals = {}
    for k in keys:
        s2 = socket.create_connection((host, int(port)))
        vals[k] = resp(s2, "GET", k)
        s2.close()
    if mode == "count":
        print(len(vals))
        return 0
    new = mangle(vals, mode)
    if not new:
        return 1
    for k, v in new.items():
        s2 = socket.create_connection((host, int(port)))
        resp(s2, "SET", k, v, "PX", "600000")
        s2.close()
    return 0


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "lmdb":
        sys.exit(lmdb(a[1], a[2]))
    if len(a) == 5 and a[0] == "redis":
        sys.exit(redis(a[1], a[2], a[3], a[4]))
    sys.exit(__doc__)
