#!/usr/bin/env python3
# gateway_attack.py - hostile clients for tests/integration/gateway_abuse.test.sh,
# loopback only, every loop bounded. Python stdlib only.
#
#   idle PORT IDLE STALLED ADDRS READY STOP SECS
#       IDLE plain TCP sockets that never send, STALLED that send the start of a
#       TLS ClientHello and stall; spread over ADDRS source addresses 127.0.1.x;
#       any the server closes is opened again. Touches READY once all are open,
#       ends when file STOP exists (or after SECS) and prints its counts.
#   slow PORT URL N ADDRS PER_ADDR_CAP READY STOP SECS
#       N TLS clients GET URL from ADDRS source addresses 127.0.2.x and read
#       2 KB every 5 s. Once all have their response head, one more request from
#       the first address must get 503 (PER_ADDR_CAP transfers there already).
#       Touches READY then, ends when STOP exists, every reader is cut, or after
#       SECS, and prints: started, refused_extra, cut, and the seconds from the
#       start of the attack to the last cut.
import os
import selectors
import socket
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit

TCP_ESTABLISHED = 1   # tcpi_state in struct tcp_info
PARTIAL_HELLO = b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc\x03\x03" + b"\x00" * 90   # 512 bytes announced, 101 sent


def source(prefix, i, addrs):
    return "%s.%d" % (prefix, 1 + i % addrs)


def touch(path):
    with open(path, "w"):
        pass


def idle(port, n_idle, n_stalled, addrs, ready, stop, secs):
    sel = selectors.DefaultSelector()
    reopened = 0
    failed = 0

    def open_one(i, stalled):
        nonlocal failed
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((source("127.0.1", i, addrs), 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            if stalled:
                s.sendall(PARTIAL_HELLO)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, (i, stalled))
        except OSError:
            failed += 1

    for i in range(n_idle):
        open_one(i, False)
    for i in range(n_stalled):
        open_one(n_idle + i, True)
    touch(ready)
    end = time.monotonic() + secs
    while time.monotonic() < end and not os.path.exists(stop):
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data:
                continue   # a TLS alert or an answer: keep the socket, it is the server's to close
            sel.unregister(s)
            s.close()
            reopened += 1
            if reopened < 20000:   # a bound, in case the server closes everything at once
                open_one(*key.data)
    open_now = len(sel.get_map())
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    print("open_at_end %d reopened %d connect_failed %d" % (open_now, reopened, failed))


def tls_connect(host_port, src):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive buffer: the server's writes back up after a few KB.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind((src, 0))
    s.settimeout(10)
    s.connect(host_port)
    return ctx.wrap_socket(s)


def request(s, target):
    s.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return head.split(b"\r\n", 1)[0].decode(errors="replace")


def slow(port, url, n, addrs, cap, ready, stop, secs):
    target = urlsplit(url).path
    start = time.monotonic()
    end = start + secs
    lock = threading.Lock()
    heads = threading.Barrier(n + 1, timeout=30)
    out = {"started": 0, "cut": 0, "last_cut": 0.0}

    def reader(i):
        s = None
        try:
            s = tls_connect(("127.0.0.1", port), source("127.0.2", i, addrs))
            status = request(s, target)
            with lock:
                if " 200 " in status:
                    out["started"] += 1
        except (OSError, ssl.SSLError):
            status = ""
        try:
            heads.wait()
        except threading.BrokenBarrierError:
            pass
        if s is None or " 200 " not in status:
            return
        try:
            s.settimeout(1)
            while time.monotonic() < end and not os.path.exists(stop):
                try:
                    got = s.recv(2048)
                except socket.timeout:
                    got = None   # nothing yet: not a cut
                if got == b"":
                    raise OSError("closed")
                for _ in range(50):   # 5 s, in steps that notice STOP and a cut
                    if os.path.exists(stop) or time.monotonic() >= end:
                        break
                    # The kernel's TCP state tells at once; the bytes already
                    # received would hide a reset from recv() for a while.
                    if s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_ESTABLISHED:
                        raise OSError("closed by the server")
                    time.sleep(0.1)
        except (OSError, ssl.SSLError):
            with lock:
                out["cut"] += 1
                out["last_cut"] = max(out["last_cut"], time.monotonic() - start)
        finally:
            s.close()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    try:
        heads.wait()
    except threading.BrokenBarrierError:
        pass
    # Readers spread round-robin: the first address holds ceil(n / addrs) transfers.
    extra = "none"
    try:
        s = tls_connect(("127.0.0.1", port), source("127.0.2", 0, addrs))
        extra = request(s, target)
        s.close()
    except (OSError, ssl.SSLError) as e:
        extra = "error " + str(e)
    touch(ready)
    for t in threads:
        t.join()
    print("started %d refused_extra %s cut %d last_cut %.1f" %
          (out["started"], "yes" if " 503 " in extra else "no(" + extra + ")", out["cut"], out["last_cut"]))


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "idle":
        port, n_idle, n_stalled, addrs = (int(a) for a in args[:4])
        idle(port, n_idle, n_stalled, addrs, args[4], args[5], float(args[6]))
    elif mode == "slow":
        port, url, n, addrs, cap = int(args[0]), args[1], int(args[2]), int(args[3]), int(args[4])
        slow(port, url, n, addrs, cap, args[5], args[6], float(args[7]))
    else:
        sys.exit("usage: gateway_attack.py idle|slow ...")


if __name__ == "__main__":
    main()
