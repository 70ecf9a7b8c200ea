#!/usr/bin/env python3
"""imapctl.py - a user's IMAP client for the integration tests (Python imaplib):
looks at and changes a mailbox of the private Dovecot as a mail client would.

  imapctl.py PORT USER PASS list FOLDER             one line per message:
                                                    UID|FLAGS|MESSAGE-ID|HANDLES|RESTORED|SUBJECT
  imapctl.py PORT USER PASS flag FOLDER UID FLAGS   UID STORE +FLAGS (FLAGS)
  imapctl.py PORT USER PASS move FOLDER UID DEST    UID MOVE to DEST (created)
  imapctl.py PORT USER PASS body FOLDER UID OUT     BODY.PEEK[] to the file OUT
"""
import email
import email.policy
import imaplib
import sys


def login(port, user, password):
    m = imaplib.IMAP4("127.0.0.1", int(port), timeout=30)
    m.login(user, password)
    return m


def select(m, folder):
    typ, _ = m.select('"%s"' % folder)
    if typ != "OK":
        sys.exit("cannot select " + folder)


def main():
    port, user, password, cmd = sys.argv[1:5]
    args = sys.argv[5:]
    m = login(port, user, password)
    if cmd == "list":
        select(m, args[0])
        typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER])")
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta = item[0].decode()
            uid = meta.split("UID ")[1].split()[0].rstrip(")")
            flags = meta.split("FLAGS (")[1].split(")")[0] if "FLAGS (" in meta else ""
            hdr = email.message_from_bytes(item[1], policy=email.policy.compat32)
            print("|".join([uid, flags, (hdr.get("Message-ID") or "").strip(),
                            "H" if hdr.get("X-Media-Handles") is not None else "-",
                            "R" if hdr.get("X-Media-Restored") is not None else "-",
                            (hdr.get("Subject") or "").strip()]))
    elif cmd == "flag":
        select(m, args[0])
        typ, _ = m.uid("STORE", args[1], "+FLAGS", "(%s)" % args[2])
        if typ != "OK":
            sys.exit("STORE failed")
    elif cmd == "move":
        select(m, args[0])
        m.create('"%s"' % args[2])
        typ, _ = m.uid("MOVE", args[1], '"%s"' % args[2])
        if typ != "OK":
            sys.exit("MOVE failed")
    elif cmd == "body":
        select(m, args[0])
        typ, data = m.uid("FETCH", args[1], "(BODY.PEEK[])")
        if typ != "OK" or not data or not isinstance(data[0], tuple):
            sys.exit("FETCH failed")
        with open(args[2], "wb") as f:
            f.write(data[0][1])
    else:
        sys.exit("unknown command " + cmd)
    m.logout()


if __name__ == "__main__":
    main()
