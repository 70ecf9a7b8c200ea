#!/usr/bin/env python3
# smtp_send_file.py - send one prepared message file (CRLF lines, no line
# starting with ".") over SMTP (RFC 5321) without reading it into memory:
# swaks and smtp-source load the whole file, which a 2 GiB video mail makes slow.
# usage: smtp_send_file.py HOST:PORT FROM TO FILE
# Prints the final reply, then "total=S eom=S": seconds from connect to the
# reply, and from the last byte sent to the reply (the filters' own work);
# then "data=S body=S": seconds from sending DATA to the reply, and from the
# 354 to the last byte sent (what a filter reading while the message streams
# adds shows here, not in eom).
import socket, sys, time

host, port = sys.argv[1].rsplit(":", 1)
mail_from, rcpt, path = sys.argv[2], sys.argv[3], sys.argv[4]
t0 = time.monotonic()
s = socket.create_connection((host, int(port)), timeout=3600)
f = s.makefile("rb")

def reply():
    lines = []
    while True:
        line = f.readline(1024).decode("ascii", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines[-1]

def cmd(text, want):
    s.sendall(text.encode() + b"\r\n")
    r = reply()
    if not r.startswith(want):
        sys.exit("%s -> %s" % (text, r))

r = reply()
if not r.startswith("220"):
    sys.exit("greeting: " + r)
cmd("EHLO bench.example.test", "250")
cmd("MAIL FROM:<%s>" % mail_from, "250")
cmd("RCPT TO:<%s>" % rcpt, "250")
td = time.monotonic()
cmd("DATA", "354")
tb = time.monotonic()
with open(path, "rb") as m:
    s.sendfile(m)
s.sendall(b".\r\n")
t1 = time.monotonic()
r = reply()
t2 = time.monotonic()
print(r)
print("total=%.3f eom=%.3f" % (t2 - t0, t2 - t1))
print("data=%.3f body=%.3f" % (t2 - td, t1 - tb))
s.sendall(b"QUIT\r\n")
sys.exit(0 if r.startswith("250") else 1)
