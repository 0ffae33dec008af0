"""Load generator for the key-value traces (redis RESP or memcached text protocol).

Keys follow a zipf(0.99) popularity over a scrambled key space, and the popular keys move to a new
part of the key space every `phase` requests (a shifting hot set, as a cache's users change). First
it stores every key once (the load phase), then sends pipelined GET/SET (9:1) requests.
"""
import random
import socket
import sys
import time


def connect(port):
    for _ in range(600):
        try:
            return socket.create_connection(('127.0.0.1', port))
        except OSError:
            time.sleep(0.2)
    raise SystemExit('server did not come up')


def main():
    proto, port, keys, requests, phase = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(1)
    s = connect(port)
    value = b'v' * 400
    weights = [1.0 / (i + 1) ** 0.99 for i in range(keys)]
    cum = []
    t = 0.0
    for w in weights:
        t += w
        cum.append(t)
    perm = list(range(keys))
    rng.shuffle(perm)

    def cmd(op, k):
        key = b'key:%d' % k
        if proto == 'redis':
            if op == 'set':
                return b'*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n' % (len(key), key, len(value), value)
            return b'*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n' % (len(key), key)
        if op == 'set':
            return b'set %s 0 0 %d\r\n%s\r\n' % (key, len(value), value)
        return b'get %s\r\n' % key

    def send(batch):
        s.sendall(b''.join(batch))
        # drain whatever came back so the socket buffers never fill
        s.setblocking(False)
        try:
            while s.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        s.setblocking(True)

    batch = []
    for k in range(keys):
        batch.append(cmd('set', k))
        if len(batch) == 64:
            send(batch)
            batch = []
    import bisect
    shift = 0
    for i in range(requests):
        if i and i % phase == 0:
            shift += keys // 5
        r = bisect.bisect_left(cum, rng.random() * t)
        k = perm[(r + shift) % keys]
        batch.append(cmd('set' if rng.random() < 0.1 else 'get', k))
        if len(batch) == 32:
            send(batch)
            batch = []
    if batch:
        send(batch)


main()
