// The search page's SSE parser (siftSseParser in web/app.js) under node: a
// stream of run events like /v1/search writes, plus the line endings,
// comments and multi-line data the format allows, gives the same events
// whether it arrives whole, split at any byte (decoded as the page decodes
// it, with a streaming TextDecoder), or one byte at a time. Run by
// tests/integration/test_page_sse.sh:
//
//     node sse_parser.test.js <path to web/app.js>
'use strict';
const assert = require('assert/strict');

const { siftSseParser } = require(process.argv[2]);

const stream =
    ': keep-alive\n\n' +
    'event: run.started\ndata: {"run_id":"r-1","seq":1,"query":"giày Nike cỡ 42 ở Đà Nẵng?"}\n\n' +
    'event: token\r\ndata: {"text":"Tôi "}\r\n\r\n' +
    'event: token\rdata: {"text":"tìm thấy 👟 "}\r\r' +
    'event: note\ndata: line one\ndata:line two\ndata\n\n' +
    'data: no event name\n\n' +
    'event: empty\n\n' +
    'id: 7\nretry: 100\nevent: run.finished\ndata: {"steps":3}\n\n' +
    'event: unfinished\ndata: cut off';
const want = [
    ['run.started', '{"run_id":"r-1","seq":1,"query":"giày Nike cỡ 42 ở Đà Nẵng?"}'],
    ['token', '{"text":"Tôi "}'],
    ['token', '{"text":"tìm thấy 👟 "}'],
    ['note', 'line one\nline two\n'],
    ['message', 'no event name'],
    ['run.finished', '{"steps":3}'],
];
const bytes = Buffer.from(stream, 'utf8');

function run(pieces) {
    const got = [];
    const feed = siftSseParser((name, data) => got.push([name, data]));
    const dec = new TextDecoder();
    for (const p of pieces) feed(dec.decode(p, { stream: true }));
    return got;
}

let checked = 0;
assert.deepEqual(run([bytes]), want, 'whole');
checked++;
// every split into two pieces, and into three around each byte
for (let i = 0; i <= bytes.length; i++) {
    assert.deepEqual(run([bytes.subarray(0, i), bytes.subarray(i)]), want, `split at ${i}`);
    const j = Math.min(bytes.length, i + 1 + (i % 7));
    assert.deepEqual(run([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)]), want,
        `split at ${i} and ${j}`);
    checked += 2;
}
assert.deepEqual(run(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1))), want, 'byte by byte');
checked++;
console.log(`ok   the SSE parser: ${checked} splits of a ${bytes.length}-byte stream`);
