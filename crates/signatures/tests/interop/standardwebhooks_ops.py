"""Runs operations with the UNMODIFIED PyPI `standardwebhooks` package.

Input (stdin): a JSON list of operations; output (stdout): a JSON list of results, one per
operation, in order. Operations:
  {"op": "verify", "secret": str, "headers": {name: value}, "body": str}
      -> {"ok": true} or {"ok": false, "error": "<exception class>: <message>"}
  {"op": "sign", "secret": str, "msg_id": str, "timestamp": int, "body": str}
      -> {"signature": "v1,..."}
"""
import json
import sys
from datetime import datetime, timezone

import standardwebhooks
from standardwebhooks.webhooks import Webhook


def run(op):
    wh = Webhook(op["secret"])
    if op["op"] == "verify":
        try:
            wh.verify(op["body"].encode("utf-8"), op["headers"])
            return {"ok": True}
        except Exception as e:  # any failure of the library counts as "rejected"
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    if op["op"] == "sign":
        ts = datetime.fromtimestamp(op["timestamp"], tz=timezone.utc)
        return {"signature": wh.sign(op["msg_id"], ts, op["body"])}
    raise SystemExit(f"unknown op {op['op']!r}")


def main():
    ops = json.load(sys.stdin)
    out = [run(op) for op in ops]
    out.append({"library": "standardwebhooks", "file": standardwebhooks.__file__})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
