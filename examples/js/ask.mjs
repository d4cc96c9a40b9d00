// node ask.mjs [URL] QUESTION...   e.g. node ask.mjs http://localhost:8080 What is DFI?
import { ask } from "./jelly.mjs";

const args = process.argv.slice(2);
const url = /^https?:\/\//.test(args[0] ?? "") ? args.shift() : "http://localhost:8080";
const final = await ask(url, "node-example", args.join(" ") || "What is a masternode?",
  (token) => process.stdout.write(token));
console.log();
for (const { title, url: link } of final.sources) console.log(`source: ${title} ${link ?? ""}`);
