"""Reference webhook receivers for the receiver-security-probe interop test.

The probe sends an endpoint a series of Standard Webhooks requests (one valid, most forged) and
grades which ones the receiver refused. Each MODE below is a receiver with one known flaw (or
none), so the test can check the probe's report case by case:

  correct           standardwebhooks' own Webhook.verify (constant-time HMAC, +-5 min timestamp)
                    plus a replay cache (a webhook-id accepted once is refused afterwards).
  accept_all        answers 200 to everything; checks nothing.
  ignore_timestamp  correct constant-time HMAC check and replay cache, but never checks the
                    timestamp (stale or future-dated messages pass).
  no_replay_cache   like correct, without the replay cache (a resent message passes).
  prefix_compare    timestamp and replay checked, but only the first 16 base64 characters of the
                    signature are compared (a truncated or half-forged signature passes).
  length_blind      timestamp and replay checked, but a signature passes when the expected one
                    merely starts with it (any truncation, even the empty "v1," passes).
  async_200         answers 200 at once, verifies like correct afterwards and only logs failures.
  mtls              correct, served over TLS requiring a client certificate from --client-ca.

Every mode apart from accept_all and async_200 refuses (401) a request missing any of the three
webhook-* headers, with a timestamp that is not a plain integer, or with no "v1," entry.

Usage: probe_receivers.py MODE [--cert PEM --key PEM --client-ca PEM]; the secret is the
whsec_<base64> value in env PROBE_SECRET (several, space-separated: accepted if any verifies).
Binds 127.0.0.1 on a free port, prints "LISTENING <port>" and serves (POST, any path) until
killed: 200 "ok" when accepted, 401 with a short reason when refused (413 for a body without
Content-Length or over 1 MiB); one line per request on stderr.
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
TOLERANCE = 5 * 60
MAX_BODY = 1 << 20
MODES = ("correct", "accept_all", "ignore_timestamp", "no_replay_cache", "prefix_compare",
         "length_blind", "async_200", "mtls")


class Refused(Exception):
    """A request the receiver refuses; the message is the 401 body."""


def log(mode, verdict, msg_id, reason=""):
    print(f"probe_receivers[{mode}]: {verdict} id={msg_id!r} {reason}".rstrip(),
          file=sys.stderr, flush=True)


def parse(headers):
    """The checks every verifying mode makes first; returns (id, timestamp, [v1 signatures])."""
    missing = [h for h in HEADERS if headers[h] is None]
    if missing:
        raise Refused("missing " + ", ".join(missing))
    msg_id, ts, sig = (headers[h] for h in HEADERS)
    if not msg_id:
        raise Refused("empty webhook-id")
    # Canonical decimal only: standardwebhooks signs str(floor(float(ts))), so "017…" or "1.5"
    # would otherwise be verified against a different string than the one in the header.
    if not re.fullmatch(r"[1-9][0-9]*", ts):
        raise Refused("timestamp not an integer")
    sigs = [entry[3:] for entry in sig.split() if entry.startswith("v1,")]
    if not sigs:
        raise Refused("no v1 signature")
    return msg_id, ts, sigs


def check_timestamp(ts):
    skew = time.time() - int(ts)
    if skew > TOLERANCE:
        raise Refused("timestamp too old")
    if skew < -TOLERANCE:
        raise Refused("timestamp too new")


def expected_mac(key, msg_id, ts, body):
    return hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()


def b64(text):
    """Strict base64 decode; None when malformed."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def verify_library(hook, headers, body):
    _, _, sigs = parse(headers)
    # standardwebhooks 1.0.0 gives up at the first malformed entry ("v1,<bad base64>", or one
    # without a comma) instead of trying the rest, and ignores non-base64 characters; hand it
    # the well-formed v1 entries only, so that "valid if any entry matches" holds.
    sigs = [s for s in sigs if b64(s) is not None]
    if not sigs:
        raise Refused("no well-formed v1 signature")
    try:
        hook.verify(body, {**headers, "webhook-signature": " ".join("v1," + s for s in sigs)})
    except json.JSONDecodeError:
        pass  # 1.0.0 json-decodes the body after the signature matched; it need not be JSON
    except Exception as e:  # WebhookVerificationError; UnicodeDecodeError for a non-UTF-8 body
        raise Refused(f"standardwebhooks: {type(e).__name__}: {e}") from None


def verify_hmac(key, headers, body):
    """Sound signature check (any entry, full decoded MAC, constant time); no timestamp check."""
    msg_id, ts, sigs = parse(headers)
    expected = expected_mac(key, msg_id, ts, body)
    if any(hmac.compare_digest(b64(s) or b"", expected) for s in sigs):
        return
    raise Refused("no matching signature")


def verify_flawed(key, headers, body, matches):
    """Timestamp checked, but the signature text compared by the (flawed) `matches`."""
    msg_id, ts, sigs = parse(headers)
    check_timestamp(ts)
    expected = base64.b64encode(expected_mac(key, msg_id, ts, body)).decode()
    if not any(matches(s, expected) for s in sigs):
        raise Refused("no matching signature")


def make_verifier(mode, secret):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    hook = Webhook(secret)
    if mode == "accept_all":
        return lambda headers, body: None
    if mode == "ignore_timestamp":
        return lambda headers, body: verify_hmac(key, headers, body)
    if mode == "prefix_compare":
        return lambda headers, body: verify_flawed(
            key, headers, body, lambda s, exp: len(s) >= 16 and s[:16] == exp[:16])
    if mode == "length_blind":
        return lambda headers, body: verify_flawed(
            key, headers, body, lambda s, exp: exp.startswith(s))
    return lambda headers, body: verify_library(hook, headers, body)


def any_of(verifiers):
    """Accepts when any verifier does (one per secret); refuses with the last refusal."""
    def verify(headers, body):
        last = None
        for v in verifiers:
            try:
                return v(headers, body)
            except Refused as e:
                last = e
        raise last
    return verify


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def do_POST(self):
        srv = self.server
        length = self.headers.get("Content-Length", "0")
        if (self.headers.get("Transfer-Encoding") or not re.fullmatch(r"[0-9]{1,8}", length)
                or int(length) > MAX_BODY):
            self.close_connection = True
            return self.answer(413, "Content-Length required, at most 1 MiB")
        body = self.rfile.read(int(length))
        headers = {h: self.headers.get(h) for h in HEADERS}
        if srv.mode == "async_200":
            self.answer(200, "ok")
            threading.Thread(target=srv.check_later, args=(headers, body), daemon=True).start()
            return
        try:
            srv.check(headers, body)
        except Refused as e:
            log(srv.mode, "refused", headers["webhook-id"], str(e))
            return self.answer(401, str(e))
        log(srv.mode, "accepted", headers["webhook-id"])
        self.answer(200, "ok")

    def answer(self, status, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # one line per request comes from do_POST instead


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode, verify, tls):
        self.mode, self.verify, self.tls = mode, verify, tls
        # Replay cache: ids of accepted requests only (recorded after the signature check).
        self.seen = None if mode in ("accept_all", "no_replay_cache") else set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)

    def check(self, headers, body):
        self.verify(headers, body)
        if self.seen is not None:
            with self.lock:
                if headers["webhook-id"] in self.seen:
                    raise Refused("replay")
                self.seen.add(headers["webhook-id"])

    def check_later(self, headers, body):
        try:
            self.check(headers, body)
            log(self.mode, "verified after answering: accepted", headers["webhook-id"])
        except Refused as e:
            log(self.mode, "verified after answering: refused", headers["webhook-id"], str(e))

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls is not None:  # the handshake happens in the connection's own thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request, client_address):
        if self.tls is not None:
            try:
                request.settimeout(10)
                request.do_handshake()
                request.settimeout(None)
            except (ssl.SSLError, OSError) as e:  # drops this connection only
                log(self.mode, "refused", None, f"TLS handshake failed: {e}")
                return
        super().finish_request(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    args = ap.parse_args()
    # Several secrets (space-separated): a receiver in a rotation's grace, valid if any verifies.
    secrets = os.environ.get("PROBE_SECRET", "").split()
    if not secrets or not all(x.startswith("whsec_") for x in secrets):
        ap.error("env PROBE_SECRET must hold whsec_<base64> secrets")
    tls = None
    if args.mode == "mtls":
        if not (args.cert and args.key and args.client_ca):
            ap.error("mtls needs --cert, --key and --client-ca")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
        tls.verify_mode = ssl.CERT_REQUIRED
        tls.load_verify_locations(args.client_ca)
    server = Server(args.mode, any_of([make_verifier(args.mode, x) for x in secrets]), tls)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
