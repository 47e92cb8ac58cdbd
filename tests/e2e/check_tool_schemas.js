// Checks sift's generated tool schemas with an independent JSON Schema
// validator (ajv), run by tests/integration/test_tool_schema_ajv.sh.
//
// 1. Every golden tool file (tests/unit/golden/*.tool.json) is a well-formed
//    chat-completions tool whose "parameters" ajv compiles in strict mode.
// 2. The parameters keep to OpenAI's strict-mode subset: every object lists
//    all its properties in "required" and sets additionalProperties false.
// 3. The shared cases (tests/unit/golden/tool_cases.json), which the C unit
//    test runs through sift's decoder, get the expected verdict from ajv too.
'use strict';
const fs = require('fs');
const path = require('path');
const Ajv = require('ajv');

const golden = process.argv[2];
if (!golden) {
    console.error('usage: node check_tool_schemas.js <tests/unit/golden>');
    process.exit(2);
}

let failures = 0;
function fail(msg) {
    console.log('FAIL: ' + msg);
    failures++;
}

// Union types ("type": ["string", "null"]) are how strict mode spells an
// optional field, so they are allowed; everything else ajv is strict about.
const ajv = new Ajv({ strict: true, allowUnionTypes: true, allErrors: true });

// Keywords a strict-mode schema may use (a conservative subset: no bounds).
const allowed = new Set(['type', 'description', 'properties', 'required',
    'additionalProperties', 'items', 'enum', 'anyOf']);

function checkStrict(schema, where) {
    if (typeof schema !== 'object' || schema === null) {
        fail(`${where}: not a schema object`);
        return;
    }
    for (const k of Object.keys(schema)) {
        if (!allowed.has(k))
            fail(`${where}: keyword "${k}" is outside the strict-mode subset`);
    }
    if (schema.anyOf)
        schema.anyOf.forEach((s, i) => checkStrict(s, `${where}.anyOf[${i}]`));
    if (schema.items)
        checkStrict(schema.items, `${where}.items`);
    if (schema.type === 'object' || schema.properties) {
        if (schema.additionalProperties !== false)
            fail(`${where}: an object must set additionalProperties to false`);
        const props = Object.keys(schema.properties || {});
        const req = schema.required || [];
        if (JSON.stringify([...props].sort()) !== JSON.stringify([...req].sort()))
            fail(`${where}: "required" must list every property (${req} vs ${props})`);
        for (const p of props)
            checkStrict(schema.properties[p], `${where}.${p}`);
    }
    // A nullable enum must admit null among its values.
    if (schema.enum && Array.isArray(schema.type) && schema.type.includes('null') &&
        !schema.enum.includes(null))
        fail(`${where}: nullable enum without null among its values`);
}

const validators = {};
const files = fs.readdirSync(golden).filter((f) => f.endsWith('.tool.json')).sort();
if (files.length === 0)
    fail(`no *.tool.json files in ${golden}`);
for (const file of files) {
    const tool = JSON.parse(fs.readFileSync(path.join(golden, file), 'utf8'));
    const fn = tool.function || {};
    if (tool.type !== 'function' || typeof fn.name !== 'string' || fn.strict !== true)
        fail(`${file}: not a strict function tool`);
    if (!/^[a-zA-Z0-9_-]{1,64}$/.test(fn.name || ''))
        fail(`${file}: bad function name ${fn.name}`);
    const params = fn.parameters;
    if (!params || params.type !== 'object')
        fail(`${file}: parameters must be an object schema`);
    if (!ajv.validateSchema(params)) {
        fail(`${file}: not a valid JSON Schema: ${ajv.errorsText(ajv.errors)}`);
        continue;
    }
    try {
        validators[fn.name] = ajv.compile(params);
    } catch (e) {
        fail(`${file}: ajv (strict) refuses it: ${e.message}`);
        continue;
    }
    checkStrict(params, fn.name);
    console.log(`ok: ${file} compiles in strict mode`);
}

const cases = JSON.parse(fs.readFileSync(path.join(golden, 'tool_cases.json'), 'utf8')).cases;
let checked = 0;
cases.forEach((c, i) => {
    const validate = validators[c.tool];
    if (!validate) {
        fail(`case ${i}: no schema for tool ${c.tool}`);
        return;
    }
    const want = c.schema_valid !== undefined ? c.schema_valid : c.valid;
    let doc;
    let parsed = true;
    if (c.raw !== undefined) {
        try {
            doc = JSON.parse(c.raw);
        } catch (e) {
            parsed = false;
        }
    } else {
        doc = c.args;
    }
    const got = parsed && validate(doc);
    if (got !== want) {
        const why = parsed ? ajv.errorsText(validate.errors) : 'not JSON';
        fail(`case ${i} (${c.raw || JSON.stringify(c.args)}): ajv says ${got ? 'valid' : 'invalid'}` +
            ` (${why}), expected ${want ? 'valid' : 'invalid'}`);
    }
    checked++;
});
console.log(`ok: ${checked} shared cases checked`);

if (failures) {
    console.log(`${failures} failure(s)`);
    process.exit(1);
}
console.log('PASS');
