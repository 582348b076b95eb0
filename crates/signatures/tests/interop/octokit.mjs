// Signs / verifies with the UNMODIFIED npm package @octokit/webhooks-methods.
// Input: JSON list of {op: "sign"|"verify", secret, payload, signature?} on stdin;
// output: JSON list of {signature} / {ok}.
import { sign, verify } from "@octokit/webhooks-methods";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const op of JSON.parse(input)) {
  if (op.op === "sign") {
    out.push({ signature: await sign(op.secret, op.payload) });
  } else {
    out.push({ ok: await verify(op.secret, op.payload, op.signature) });
  }
}
process.stdout.write(JSON.stringify(out));
