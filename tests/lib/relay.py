#!/usr/bin/env python3
"""relay.py: a TCP relay on loopback that stands between cachefence and the
test suite's redis-server and misbehaves on purpose, the way a slow, stalled
or broken network does.

usage: relay.py --to PORT --port-file FILE [--mode MODE] [--mode-file FILE]
                [--after BYTES] [--upstream] [--lifetime SECONDS]

It listens on a free port of 127.0.0.1, writes that port to --port-file once
it accepts connections (the file appears whole, by rename), and forwards
every connection to 127.0.0.1:PORT. The mode shapes one direction, the
replies (server to client) unless --upstream names the commands (client to
server); the other direction always passes as it comes:

  pass           forward as it comes
  delay:MS       hold each piece MS milliseconds before forwarding it
  trickle:RATE   forward RATE bytes per second, a few bytes at a time
  stop           forward nothing more, holding the connection open
  cut:MARKER     forward up to and including the first MARKER (text, with
                 \\r \\n \\xNN escapes), then close both sides

--after BYTES lets the first BYTES of the shaped direction of each
connection pass as they come, and shapes only what follows. --mode-file
names a file that holds a mode; it is read at each new connection (absent
or empty: --mode), so a test can change the relay's behaviour between calls.
--follow reads --mode-file again before each piece, so a test can also
change connections already open (`echo stop >FILE`: a network cut under a
connection that was working).
The relay exits after --lifetime seconds (default 120) whatever happens, so
a test that dies cannot leave it behind for long.
"""
import argparse
import os
import socket
import sys
import threading
import time


def parse_mode(text):
    text = text.strip()
    name, _, arg = text.partition(':')
    if name == 'pass' or name == 'stop':
        return (name, None)
    if name in ('delay', 'trickle'):
        value = float(arg)
        if value <= 0:
            raise ValueError('%s needs a positive number' % name)
        return (name, value)
    if name == 'cut':
        marker = arg.encode('latin-1').decode('unicode_escape').encode('latin-1')
        if not marker:
            raise ValueError('cut needs a marker')
        return (name, marker)
    raise ValueError('unknown mode %r' % text)


def current_mode(args):
    if args.mode_file:
        try:
            with open(args.mode_file) as f:
                text = f.read().strip()
            if text:
                return parse_mode(text)
        except FileNotFoundError:
            pass
    return parse_mode(args.mode)


def close_quietly(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass


def pump_plain(src, dst):
    """forward src to dst as it comes; end dst's writing side at src's end"""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def pump_shaped(src, dst, mode, after, both, follow=None):
    name, arg = mode
    passed = 0
    seen = b''  # the tail kept to find a marker split across pieces
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if follow is not None:
                name, arg = current_mode(follow)
            if passed < after:
                n = min(after - passed, len(data))
                dst.sendall(data[:n])
                passed += n
                data = data[n:]
                if not data:
                    continue
            if name == 'pass':
                dst.sendall(data)
            elif name == 'stop':
                continue  # swallow it: the other side hears nothing more
            elif name == 'delay':
                time.sleep(arg / 1000.0)
                dst.sendall(data)
            elif name == 'trickle':
                # slices of about 1/50 s worth, at least one byte
                step = max(1, int(arg / 50))
                for i in range(0, len(data), step):
                    piece = data[i:i + step]
                    dst.sendall(piece)
                    time.sleep(len(piece) / arg)
            elif name == 'cut':
                window = seen + data
                at = window.find(arg)
                if at < 0:
                    dst.sendall(data)
                    seen = window[-(len(arg) - 1):] if len(arg) > 1 else b''
                    continue
                end = at + len(arg) - len(seen)
                dst.sendall(data[:end])
                close_quietly(*both)
                return
        if name != 'stop':
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(client, args):
    try:
        mode = current_mode(args)
        server = socket.create_connection(('127.0.0.1', args.to), timeout=10)
        server.settimeout(None)
    except (OSError, ValueError) as e:
        print('relay: %s' % e, file=sys.stderr)
        close_quietly(client)
        return
    both = (client, server)
    if args.upstream:
        shaped = (client, server)
        plain = (server, client)
    else:
        shaped = (server, client)
        plain = (client, server)
    threads = [
        threading.Thread(target=pump_plain, args=plain, daemon=True),
        threading.Thread(target=pump_shaped, args=shaped + (mode, args.after, both,
                                                           args if args.follow else None),
                         daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    close_quietly(*both)


def main():
    p = argparse.ArgumentParser(description='a misbehaving TCP relay for tests (see the top of this file)')
    p.add_argument('--to', type=int, required=True, help='the port on 127.0.0.1 to forward to')
    p.add_argument('--port-file', required=True, help='where to write the port the relay listens on')
    p.add_argument('--mode', default='pass', help='pass, delay:MS, trickle:RATE, stop or cut:MARKER')
    p.add_argument('--mode-file', help='a file with a mode, read at each connection')
    p.add_argument('--after', type=int, default=0, help='bytes to pass unshaped on each connection')
    p.add_argument('--upstream', action='store_true', help='shape the commands, not the replies')
    p.add_argument('--follow', action='store_true',
                   help='read --mode-file again before each piece, on open connections too')
    p.add_argument('--lifetime', type=float, default=120, help='seconds before the relay exits')
    args = p.parse_args()
    parse_mode(args.mode)  # refuse a bad mode at once

    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('127.0.0.1', 0))
    listener.listen(64)
    tmp = args.port_file + '.tmp'
    with open(tmp, 'w') as f:
        f.write('%d\n' % listener.getsockname()[1])
    os.rename(tmp, args.port_file)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, args), daemon=True).start()


if __name__ == '__main__':
    main()
