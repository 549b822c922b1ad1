// HashiCorp's HCL parser (hcl/v2, compiled to WASM in @cdktf/hcl2json) for the offline Terraform
// tests. Two modes, both print one JSON document on stdout:
//
//   node hcl2json.mjs FILE...      {"<file>": {"json": <hcl2json body>} | {"error": "<diagnostic>"}}
//                                  exit 1 if any file fails to parse.
//   node hcl2json.mjs --expr       reads a JSON array of expression strings on stdin and prints
//                                  [{"ast": <expression syntax tree>} | {"error": "..."}] in order.
import { readFileSync } from "node:fs";
import { getExpressionAst, parse } from "@cdktf/hcl2json";

async function parseFiles(files) {
  const result = {};
  let failures = 0;
  for (const file of files) {
    try {
      result[file] = { json: await parse(file, readFileSync(file, "utf8")) };
    } catch (error) {
      failures += 1;
      result[file] = { error: String(error?.message ?? error) };
    }
  }
  return { result, failures };
}

async function parseExpressions(expressions) {
  const result = [];
  for (const expression of expressions) {
    try {
      result.push({ ast: await getExpressionAst("expression.tf", expression) });
    } catch (error) {
      result.push({ error: String(error?.message ?? error) });
    }
  }
  return result;
}

const args = process.argv.slice(2);
if (args[0] === "--expr") {
  const expressions = JSON.parse(readFileSync(0, "utf8"));
  process.stdout.write(JSON.stringify(await parseExpressions(expressions)));
} else if (args.length > 0) {
  const { result, failures } = await parseFiles(args);
  process.stdout.write(JSON.stringify(result));
  process.exitCode = failures ? 1 : 0;
} else {
  process.stderr.write("usage: node hcl2json.mjs FILE... | node hcl2json.mjs --expr < expressions.json\n");
  process.exitCode = 2;
}
