"""Signatures for the inbound interop test that providers_sign.py does not cover, produced with
UNMODIFIED third-party libraries:

- paddle: the official Paddle Billing SDK (paddle-python-sdk) computes h1 with its own
  PaddleSignature.calculate_hmac and its Verifier accepts the header ("self_check");
- standard-webhooks-v1a: an ed25519 signature (PyNaCl / libsodium) over "id.timestamp.body", as
  the Standard Webhooks spec defines v1a, with the whpk_ public key.

Input (stdin): JSON list of operations; output: JSON list of results, in order.
"""
import base64
import json
import sys


def paddle_op(op):
    from paddle_billing.Notifications import PaddleSignature, Secret, Verifier

    ts = op["timestamp"]
    body = op["body"]
    h1 = PaddleSignature.calculate_hmac(op["secret"], f"{ts}:{body}".encode()).hexdigest()
    header = f"ts={ts};h1={h1}"

    class Req:
        headers = {"Paddle-Signature": header}
        body = op["body"].encode()

    ok = Verifier(maximum_variance=300).verify(Req(), Secret(op["secret"]))
    return {"paddle-signature": header, "self_check": ok}


def v1a_op(op):
    from nacl.signing import SigningKey

    key = SigningKey(bytes.fromhex(op["seed_hex"]))
    signed = f"{op['msg_id']}.{op['timestamp']}.{op['body']}".encode()
    sig = key.sign(signed).signature
    key.verify_key.verify(signed, sig)
    return {
        "public_key": "whpk_" + base64.b64encode(key.verify_key.encode()).decode(),
        "webhook-id": op["msg_id"],
        "webhook-timestamp": str(op["timestamp"]),
        "webhook-signature": "v1a," + base64.b64encode(sig).decode(),
        "self_check": True,
    }


OPS = {"paddle": paddle_op, "standard-webhooks-v1a": v1a_op}


def main():
    ops = json.load(sys.stdin)
    json.dump([OPS[op["provider"]](op) for op in ops], sys.stdout)


if __name__ == "__main__":
    main()
