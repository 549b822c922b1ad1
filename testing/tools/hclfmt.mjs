// `terraform fmt -check` without terraform: hclwrite.Format from @cdktf/hcl-tools (WASM).
//   node hclfmt.mjs FILE...   prints {"<file>": {"formatted": true} |
//                                     {"formatted": false, "expected": "<canonical text>"} |
//                                     {"error": "..."}}
//                             exit 1 if any file is not in canonical format.
import { readFileSync } from "node:fs";
import { format } from "@cdktf/hcl-tools";

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write("usage: node hclfmt.mjs FILE...\n");
  process.exit(2);
}
const result = {};
let failures = 0;
for (const file of files) {
  const text = readFileSync(file, "utf8");
  try {
    const expected = await format(text);
    if (expected === text) {
      result[file] = { formatted: true };
    } else {
      failures += 1;
      result[file] = { formatted: false, expected };
    }
  } catch (error) {
    failures += 1;
    result[file] = { error: String(error?.message ?? error) };
  }
}
process.stdout.write(JSON.stringify(result));
process.exitCode = failures ? 1 : 0;
