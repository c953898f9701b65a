// Drives the official JS SDK (@azure/communication-sms, pinned in package.json) against an
// endpoint given by the test: reads a JSON plan on stdin, prints one JSON line per step.
// Plan: {"connectionString": "...", "steps": [{"call": "add"|"check"|"remove", "from": "...", "to": [...]}]}
import { SmsClient } from "@azure/communication-sms";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const plan = await readStdin();
const client = new SmsClient(plan.connectionString, { retryOptions: { maxRetries: 0 } });
for (const step of plan.steps) {
  try {
    const results = await client.optOuts[step.call](step.from, step.to);
    console.log(JSON.stringify({ call: step.call, results }));
  } catch (error) {
    // A RestError: what the SDK made of an error answer.
    console.log(JSON.stringify({
      call: step.call,
      error: { name: error.name, statusCode: error.statusCode, code: error.code, message: String(error.message) },
    }));
  }
}
