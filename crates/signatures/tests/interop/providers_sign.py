"""Produces webhook signatures with the providers' own, UNMODIFIED PyPI libraries.

Input (stdin): a JSON list of operations; output (stdout): a JSON list of results, one per
operation, in order. Each operation names a provider and gives the inputs; each result
holds the header values the provider would send. Where the library also has a verifier,
the result says whether it accepts its own output ("self_check"), which proves the
header format we reproduce is the real one.
"""
import base64
import json
import sys
from datetime import datetime, timezone


def stripe_op(op):
    import stripe

    header = stripe.WebhookSignature.generate_signature_header(
        op["body"], op["secret"], timestamp=op["timestamp"]
    )
    # Rotation: Stripe sends one v1 per active secret.
    for extra in op.get("extra_secrets", []):
        signed = f"{op['timestamp']}.{op['body']}"
        header += ",v1=" + stripe.WebhookSignature._compute_signature(signed, extra)
    stripe.WebhookSignature.verify_header(op["body"], header, op["secret"], tolerance=300)
    return {"stripe-signature": header, "self_check": True}


def slack_op(op):
    from slack_sdk.signature import SignatureVerifier

    v = SignatureVerifier(op["secret"])
    ts = str(op["timestamp"])
    sig = v.generate_signature(timestamp=ts, body=op["body"])
    ok = v.is_valid(body=op["body"], timestamp=ts, signature=sig)
    return {"x-slack-request-timestamp": ts, "x-slack-signature": sig, "self_check": ok}


def twilio_op(op):
    from twilio.request_validator import RequestValidator

    v = RequestValidator(op["secret"])
    if op.get("json"):
        url = op["url"] + ("&" if "?" in op["url"] else "?") + "bodySHA256=" + v.compute_hash(op["body"])
        sig = v.compute_signature(url, {}, op.get("algorithm"))
        ok = v.validate(url, op["body"], sig, op.get("algorithm"))
        return {"url": url, "x-twilio-signature": sig, "self_check": ok}
    params = op["params"]
    sig = v.compute_signature(op["url"], params, op.get("algorithm"))
    ok = v.validate(op["url"], params, sig, op.get("algorithm"))
    from urllib.parse import urlencode

    # The form body a web server would receive for these parameters.
    return {"url": op["url"], "x-twilio-signature": sig, "form_body": urlencode(params), "self_check": ok}


def svix_op(op):
    from svix.webhooks import Webhook

    wh = Webhook(op["secret"])
    ts = datetime.fromtimestamp(op["timestamp"], tz=timezone.utc)
    sig = wh.sign(op["msg_id"], ts, op["body"])
    headers = {"svix-id": op["msg_id"], "svix-timestamp": str(op["timestamp"]), "svix-signature": sig}
    wh.verify(op["body"].encode(), headers)
    headers["self_check"] = True
    return headers


def discord_op(op):
    from nacl.signing import SigningKey

    key = SigningKey(bytes.fromhex(op["seed_hex"]))
    ts = str(op["timestamp"])
    signed = key.sign((ts + op["body"]).encode())
    key.verify_key.verify(signed)
    return {
        "public_key": key.verify_key.encode().hex(),
        "x-signature-ed25519": signed.signature.hex(),
        "x-signature-timestamp": ts,
        "self_check": True,
    }


def sendgrid_op(op):
    from ellipticcurve.curve import prime256v1
    from ellipticcurve.ecdsa import Ecdsa
    from ellipticcurve.privateKey import PrivateKey
    from sendgrid.helpers.eventwebhook import EventWebhook

    key = PrivateKey(curve=prime256v1)
    ts = str(op["timestamp"])
    sig = Ecdsa.sign(ts + op["body"], key).toBase64()
    pem = key.publicKey().toPem()
    public_key = "".join(l for l in pem.strip().splitlines() if not l.startswith("-----"))
    ok = EventWebhook(public_key).verify_signature(op["body"], sig, ts)
    return {
        "public_key": public_key,
        "x-twilio-email-event-webhook-signature": sig,
        "x-twilio-email-event-webhook-timestamp": ts,
        "self_check": ok,
    }


OPS = {
    "stripe": stripe_op,
    "slack": slack_op,
    "twilio": twilio_op,
    "svix": svix_op,
    "discord": discord_op,
    "sendgrid": sendgrid_op,
}


def main():
    ops = json.load(sys.stdin)
    json.dump([OPS[op["provider"]](op) for op in ops], sys.stdout)


if __name__ == "__main__":
    main()
