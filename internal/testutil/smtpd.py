#!/usr/bin/python3
"""A real SMTP server for cairn's notify tests (aiosmtpd, Debian
python3-aiosmtpd): writes each message to OUTDIR/NNN.eml with the envelope
in OUTDIR/NNN.env, prints READY when it accepts connections.

usage: smtpd.py HOST PORT OUTDIR [--starttls CERT KEY] [--smtps CERT KEY]
                                 [--auth USER PASSWORD] [--auth-exclude MECH]...
                                 [--auth-refuse MECH]...
"""
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, outdir):
        self.outdir = outdir
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        base = os.path.join(self.outdir, "%03d" % self.n)
        with open(base + ".env.tmp", "w") as f:
            f.write("from %s\n" % envelope.mail_from)
            for r in envelope.rcpt_tos:
                f.write("to %s\n" % r)
            f.write("tls %s\n" % ("yes" if session.ssl or server.transport.get_extra_info("ssl_object") else "no"))
            login = getattr(session.auth_data, "login", None) or b""
            f.write("auth %s\n" % (login.decode() if isinstance(login, bytes) else login))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".env.tmp", base + ".env")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"


def main():
    host, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    args = sys.argv[4:]
    kw = {}
    refuse = []
    user = password = None
    while args:
        a = args.pop(0)
        if a in ("--starttls", "--smtps"):
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.pop(0), args.pop(0))
            if a == "--starttls":
                kw["tls_context"] = ctx
                kw["require_starttls"] = True
            else:
                kw["ssl_context"] = ctx
        elif a == "--auth-exclude":
            kw.setdefault("auth_exclude_mechanism", []).append(args.pop(0))
        elif a == "--auth-refuse":
            refuse.append(args.pop(0))
        elif a == "--auth":
            user, password = args.pop(0).encode(), args.pop(0).encode()
        else:
            sys.exit("unknown argument " + a)

    def authenticator(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data.login == user and auth_data.password == password:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    if user is not None:
        kw["authenticator"] = authenticator
        # SMTPS is TLS from the start (aiosmtpd only knows STARTTLS's).
        kw["auth_require_tls"] = "ssl_context" not in kw
        kw["auth_required"] = True
    else:
        kw["auth_require_tls"] = False
    if "ssl_context" in kw:
        kw["server_hostname"] = "localhost"
    store = Store(outdir)
    for m in refuse:
        # aiosmtpd offers each auth_MECH method of the handler.
        async def auth_refused(server, args):
            return AuthResult(success=False, handled=False)
        setattr(store, "auth_" + m.replace("-", "__"), auth_refused)
    c = Controller(store, hostname=host, port=port, **kw)
    c.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        c.stop()


if __name__ == "__main__":
    main()
