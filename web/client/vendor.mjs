// Copies the pinned libraries' prebuilt browser files (and their licences) into
// ../static/vendor/, the only place the page loads them from. Run: npm ci && npm run vendor
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

const files = [
  ["socket.io-client/dist/socket.io.min.js", "socket.io.min.js"],
  ["socket.io-client/LICENSE", "socket.io-client.LICENSE"],
  ["marked/lib/marked.umd.js", "marked.umd.js"],
  ["marked/LICENSE", "marked.LICENSE"],
  ["dompurify/dist/purify.min.js", "purify.min.js"],
  ["dompurify/LICENSE", "dompurify.LICENSE"],
];
const out = new URL("../static/vendor/", import.meta.url);
mkdirSync(out, { recursive: true });
const versions = {};
for (const [from, to] of files) {
  let text = readFileSync(new URL(`node_modules/${from}`, import.meta.url), "utf8");
  // no source maps are vendored: drop the comment that points browsers at one
  text = text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n");
  writeFileSync(new URL(to, out), text);
  const pkg = from.split("/")[0];
  versions[pkg] = JSON.parse(readFileSync(new URL(`node_modules/${pkg}/package.json`, import.meta.url))).version;
}
writeFileSync(new URL("VERSIONS.json", out), JSON.stringify(versions, null, 2) + "\n");
console.log("vendored", versions);
