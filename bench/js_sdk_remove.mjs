// What a user would do without the gateway: the official JS SDK removing COUNT numbers from
// the opt-out list, one optOuts.remove call per chunk of 100 (more gets a 400), one after the
// other. Prints {"seconds": ...} for the loop alone (not Node's start-up).
// Usage: node bench/js_sdk_remove.mjs CONNECTION_STRING SENDER COUNT
import { SmsClient } from "@azure/communication-sms";

const [connectionString, sender, countText] = process.argv.slice(2);
const count = Number(countText);
const numbers = Array.from({ length: count }, (_, n) => `+1425${String(n).padStart(7, "0")}`);
const client = new SmsClient(connectionString, { retryOptions: { maxRetries: 0 } });
await client.optOuts.remove(sender, numbers.slice(0, 1)); // warm the connection, like the other figures
const started = performance.now();
let failed = 0;
for (let start = 0; start < count; start += 100) {
  const results = await client.optOuts.remove(sender, numbers.slice(start, start + 100));
  failed += results.filter((r) => r.httpStatusCode !== 200).length;
}
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ seconds, failed }));
