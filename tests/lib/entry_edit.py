#!/usr/bin/env python3
"""Edit one stored entry in place, as a writer without the signing key could.

usage: entry_edit.py redis PORT NAME FIELD POS       flip a bit of byte POS of the
       entry_edit.py file PATH FIELD POS             hash field (Redis) or of the
                                                     stored out/err (local store file)
       entry_edit.py redis PORT NAME FIELD = VALUE   set a metadata field (Redis)

POS may be negative (from the end). Talks RESP itself on loopback, so that
binary values go both ways unchanged (redis-cli --raw adds a newline)."""
import socket
import sys


def resp_command(sock, *args):
    out = b'*%d\r\n' % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b'$%d\r\n%s\r\n' % (len(a), a)
    sock.sendall(out)
    return read_reply(sock.makefile('rb'))


def read_reply(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b'$':
        n = int(rest)
        if n < 0:
            return None
        data = b''
        while len(data) < n + 2:  # a socket's reads may come short
            piece = f.read(n + 2 - len(data))
            if not piece:
                raise SystemExit('the connection closed mid-value')
            data += piece
        return data[:-2]
    if kind in (b'+', b':'):
        return rest
    raise SystemExit('redis said: %r' % line)


def flip(data, pos):
    data = bytearray(data)
    data[pos] ^= 1
    return bytes(data)


def main():
    where = sys.argv[1]
    if where == 'redis':
        port, name, field = int(sys.argv[2]), sys.argv[3], sys.argv[4]
        sock = socket.create_connection(('127.0.0.1', port))
        if sys.argv[5] == '=':
            resp_command(sock, 'HSET', name, field, sys.argv[6])
            return
        value = resp_command(sock, 'HGET', name, field)
        if value is None:
            raise SystemExit('no field %s in %s' % (field, name))
        resp_command(sock, 'HSET', name, field, flip(value, int(sys.argv[5])))
        return
    path, field, pos = sys.argv[2], sys.argv[3], int(sys.argv[4])
    b = open(path, 'rb').read()
    i = b.index(b'\nsum=') + 1
    start = b.index(b'\n', i) + 2
    head = dict(l.split(b'=', 1) for l in b[:i].split(b'\n')[1:] if b'=' in l)
    olen, elen = int(head[b'olen']), int(head[b'elen'])
    off, n = (start, olen) if field == 'out' else (start + olen, elen)
    body = flip(b[off:off + n], pos)
    open(path, 'wb').write(b[:off] + body + b[off + n:])


main()
