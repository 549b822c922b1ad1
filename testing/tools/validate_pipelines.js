#!/usr/bin/env node
// Validate Azure Pipelines YAML files with Microsoft's language service (the engine of the
// VS Code extension) against the vendored official schema.
//
// Usage: node validate_pipelines.js [--json] [--schema PATH] [--kind KIND] FILE...
//   --json    print one JSON document {files, problems: [{file, line, column, severity, message, kind}]}
//   --schema  service-schema.json or service-schema.json.gz
//             (default: testing/fixtures/schemas/azure-pipelines/service-schema.json.gz)
//   --kind    force the document kind for every file: pipeline | steps | jobs | stages | variables
//
// The kind of each file is taken from its path when not forced: files under templates/steps/,
// templates/jobs/ and templates/stages/ are validated against the schema's stepsTemplate,
// jobsTemplate and stagesTemplate definitions, files under variables/ against variablesTemplate,
// and everything else against the schema root (a whole pipeline). Without this a template would
// pass as long as it looked like *some* pipeline shape.
//
// Exit status: 0 when no problem of severity 1 (error) or 2 (warning) was found, 1 otherwise,
// 2 on usage errors. Hints (severity 3/4, e.g. deprecations) are printed but do not fail.
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

// 0.9.2 ships stray debug console.log calls: silence them, keep our own writer.
const out = (line) => process.stdout.write(line + '\n');
console.log = () => {};

const KINDS = {
  pipeline: null,
  steps: 'stepsTemplate',
  jobs: 'jobsTemplate',
  stages: 'stagesTemplate',
  variables: 'variablesTemplate',
};
const FAILING_SEVERITY = 2;
const DEFAULT_SCHEMA = path.resolve(
  __dirname, '..', 'fixtures', 'schemas', 'azure-pipelines', 'service-schema.json.gz');

function parseArgs(argv) {
  const options = { json: false, schema: DEFAULT_SCHEMA, kind: null, files: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--json') options.json = true;
    else if (arg === '--schema') options.schema = argv[++i];
    else if (arg === '--kind') options.kind = argv[++i];
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`);
    else options.files.push(arg);
  }
  if (options.kind !== null && !(options.kind in KINDS)) {
    throw new Error(`--kind must be one of ${Object.keys(KINDS).join(', ')}`);
  }
  if (!options.files.length) throw new Error('no files given');
  return options;
}

function kindOf(file) {
  const parts = path.resolve(file).split(path.sep);
  const templatesAt = parts.lastIndexOf('templates');
  if (templatesAt >= 0 && templatesAt + 2 < parts.length) {
    const folder = parts[templatesAt + 1];
    if (folder in KINDS && folder !== 'pipeline' && folder !== 'variables') return folder;
  }
  if (parts.length >= 2 && parts[parts.length - 2] === 'variables') return 'variables';
  return 'pipeline';
}

function readSchemaText(schemaPath) {
  const raw = fs.readFileSync(schemaPath);
  return schemaPath.endsWith('.gz') ? zlib.gunzipSync(raw).toString('utf8') : raw.toString('utf8');
}

// Tasks newer than the vendored schema (sprint 261 lists PublishCodeCoverageResults@2 by name
// only, without inputs): one anyOf alternative per vendored task.json under
// fixtures/schemas/azure-pipelines/tasks/, so their inputs are checked like any other task's.
const TASKS_DIR = path.join(__dirname, '..', 'fixtures', 'schemas', 'azure-pipelines', 'tasks');
const INPUT_TYPES = { boolean: 'boolean', string: 'string', multiLine: 'string', filePath: 'string' };

function supplementTasks(schema) {
  if (!fs.existsSync(TASKS_DIR)) return;
  for (const file of fs.readdirSync(TASKS_DIR).filter((f) => f.endsWith('.task.json')).sort()) {
    const task = JSON.parse(fs.readFileSync(path.join(TASKS_DIR, file), 'utf8'));
    const ref = `${task.name}@${task.version.Major}`;
    const properties = {};
    for (const input of task.inputs) {
      const type = INPUT_TYPES[input.type];
      if (type === undefined) throw new Error(`${file}: input type ${input.type} has no mapping`);
      properties[input.name] = { type, ignoreCase: 'key' };
    }
    const required = task.inputs.filter((input) => input.required).map((input) => input.name);
    schema.definitions.task.anyOf.push({
      firstProperty: ['task'],
      required: required.length ? ['task', 'inputs'] : ['task'],
      properties: {
        task: { pattern: `^${ref}$`, ignoreCase: 'value' },
        inputs: { properties, additionalProperties: false, required },
      },
    });
  }
}

// One schema object per kind. Each is parsed afresh because the language service resolves $refs
// by copying into the schema objects it is given.
function schemaFor(kind, schemaText) {
  const schema = JSON.parse(schemaText);
  supplementTasks(schema);
  const definition = KINDS[kind];
  if (definition === null) return schema;
  if (!(definition in schema.definitions)) {
    throw new Error(`schema has no definitions/${definition}`);
  }
  return { $ref: `#/definitions/${definition}`, definitions: schema.definitions };
}

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`validate_pipelines: ${error.message}\n`);
    process.exitCode = 2;
    return;
  }
  const ls = require('azure-pipelines-language-service');
  const { TextDocument } = require('vscode-languageserver-textdocument');

  const schemaText = readSchemaText(options.schema);
  const schemaUri = (kind) => `file:///azure-pipelines-schema/${kind}.json`;
  const schemas = new Map();
  const requestService = (uri) => {
    const kind = path.basename(new URL(uri).pathname, '.json');
    if (!(kind in KINDS)) return Promise.reject(new Error(`unknown schema ${uri}`));
    if (!schemas.has(kind)) schemas.set(kind, schemaFor(kind, schemaText));
    // Must resolve to the parsed object: a string is silently taken as "no problems".
    return Promise.resolve(schemas.get(kind));
  };
  const documentKinds = new Map();
  const customSchemaProvider = (resource) => Promise.resolve(schemaUri(documentKinds.get(resource)));
  const service = ls.getLanguageService(requestService, [], customSchemaProvider, {
    resolveRelativePath: (relative, resource) => new URL(relative, resource).toString(),
  });
  service.configure({ validate: true });

  const problems = [];
  for (const file of options.files) {
    const kind = options.kind || kindOf(file);
    const text = fs.readFileSync(file, 'utf8');
    const uri = 'file://' + path.resolve(file);
    documentKinds.set(uri, kind);
    const document = TextDocument.create(uri, 'azure-pipelines', 1, text);
    const diagnostics = await service.doValidation(document, ls.parse(text));
    for (const diagnostic of diagnostics) {
      problems.push({
        file,
        kind,
        line: diagnostic.range.start.line + 1,
        column: diagnostic.range.start.character + 1,
        severity: diagnostic.severity,
        message: diagnostic.message,
      });
    }
  }

  if (options.json) {
    out(JSON.stringify({ files: options.files.length, problems }, null, 2));
  } else {
    for (const p of problems) {
      out(`${p.file}:${p.line}:${p.column} [${p.kind}, severity ${p.severity}] ${p.message}`);
    }
    const failing = problems.filter((p) => p.severity <= FAILING_SEVERITY).length;
    out(`${options.files.length} files, ${failing} problems of severity <= ${FAILING_SEVERITY}`);
  }
  process.exitCode = problems.some((p) => p.severity <= FAILING_SEVERITY) ? 1 : 0;
}

main().catch((error) => {
  process.stderr.write(`validate_pipelines: ${error.stack || error}\n`);
  process.exitCode = 2;
});
