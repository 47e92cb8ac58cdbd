// The official openai npm SDK as an outside client of sift's
// /v1/chat/completions and /v1/models, over real sockets. Run by
// tests/integration/test_chat_sdk.sh:
//
//     node chat_sdk.test.js <base URL, e.g. http://127.0.0.1:8080/v1> <API key> [<slow base URL>]
//
// The slow server, when given, has no keys and a run deadline shorter than
// its answers take, so every run fails after it started.
// Exits 0 when every check passed, 1 otherwise (each failure printed).
'use strict';
const assert = require('assert/strict');
const OpenAI = require('openai');

const [baseURL, apiKey, slowURL] = process.argv.slice(2);
if (!baseURL || !apiKey) {
    console.error('usage: node chat_sdk.test.js <baseURL> <apiKey>');
    process.exit(2);
}
// No retries: a 5xx or 429 must show up here, not be hidden by a retry.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const question = 'Is NIKE-PEG40-42 in stock in Hanoi, Da Nang or HCMC?';

// The "sift" extension's tool events, wherever they come from.
function toolCalls(events, name) {
    return events.filter((e) => e.event === 'tool.started' && e.name === name);
}

const checks = [];
function check(name, fn) {
    checks.push({ name, fn });
}

check('models.list and models.retrieve', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ['sift']);
    const m = await client.models.retrieve('sift');
    assert.equal(m.id, 'sift');
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
});

let oneShot; // the non-streaming answer, compared with the streamed one

check('chat.completions.create, not streaming', async () => {
    const c = await client.chat.completions.create({
        model: 'sift',
        messages: [{ role: 'user', content: question }],
        temperature: 0, // accepted and ignored
    });
    assert.equal(c.object, 'chat.completion');
    assert.match(c.id, /^chatcmpl-/);
    assert.equal(c.model, 'sift');
    assert.equal(c.choices.length, 1);
    const choice = c.choices[0];
    assert.equal(choice.finish_reason, 'stop');
    assert.equal(choice.message.role, 'assistant');
    assert.match(choice.message.content, /NIKE-PEG40-42/);
    assert.match(choice.message.content, /Stock: Hanoi \(HAN\) \d+/);
    assert.equal(typeof c.usage.total_tokens, 'number');
    // the extension comes through the SDK untouched
    const inv = toolCalls(c.sift.events, 'check_inventory');
    assert.equal(inv.length, 3);
    assert.deepEqual(inv.map((e) => e.arguments.location).sort(), ['DAD', 'HAN', 'SGN']);
    const done = c.sift.events.filter((e) => e.event === 'tool.finished');
    assert.ok(done.every((e) => e.error === null && typeof e.duration_ms === 'number'));
    oneShot = choice.message.content;
});

check('chat.completions.create, stream: true', async () => {
    const stream = await client.chat.completions.create({
        model: 'sift',
        messages: [{ role: 'user', content: question }],
        stream: true,
        stream_options: { include_usage: true },
    });
    let text = '';
    let role = null;
    let finish = null;
    let usage = null;
    const ext = [];
    for await (const chunk of stream) {
        assert.equal(chunk.object, 'chat.completion.chunk');
        if (chunk.sift) ext.push(chunk.sift);
        if (chunk.usage) usage = chunk.usage;
        if (!chunk.choices.length) continue;
        const { delta, finish_reason } = chunk.choices[0];
        if (delta.role) role = delta.role;
        if (delta.content) text += delta.content;
        if (finish_reason) finish = finish_reason;
    }
    assert.equal(role, 'assistant');
    assert.equal(finish, 'stop');
    assert.equal(typeof usage.total_tokens, 'number');
    assert.match(text, /NIKE-PEG40-42/);
    if (oneShot) assert.equal(text, oneShot);
    assert.equal(toolCalls(ext, 'check_inventory').length, 3);
    assert.equal(ext[0].event, 'run.started');
    assert.equal(ext[ext.length - 1].event, 'run.finished');
    assert.ok(ext.some((e) => e.event === 'products' && e.products.length > 0));
});

check("the SDK's stream helper assembles the same completion", async () => {
    const runner = client.beta.chat.completions.stream({
        model: 'sift',
        messages: [{ role: 'user', content: question }],
    });
    const c = await runner.finalChatCompletion();
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.match(c.choices[0].message.content, /NIKE-PEG40-42/);
});

check('multi-turn: the messages are the conversation', async () => {
    const first = 'Nike Pegasus 40 running shoes size 42 in stock in Hanoi?';
    const a1 = await client.chat.completions.create({
        model: 'sift',
        messages: [{ role: 'user', content: first }],
    });
    assert.match(a1.choices[0].message.content, /size 42/);
    const a2 = await client.chat.completions.create({
        model: 'sift',
        messages: [
            { role: 'system', content: 'Answer briefly.' },
            { role: 'user', content: first },
            { role: 'assistant', content: a1.choices[0].message.content },
            { role: 'user', content: [{ type: 'text', text: 'what about size 43?' }] },
        ],
    });
    const t = a2.choices[0].message.content;
    // brand, product and warehouse carried over from the first turn
    assert.match(t, /Pegasus 40/);
    assert.match(t, /size 43/);
    assert.match(t, /Hanoi \(HAN\)/);
    const search = toolCalls(a2.sift.events, 'search_products');
    assert.equal(search[0].arguments.filters.size, '43');
});

check('a wrong API key is an AuthenticationError', async () => {
    const bad = new OpenAI({ baseURL, apiKey: 'not-the-key', maxRetries: 0 });
    await assert.rejects(
        bad.chat.completions.create({ model: 'sift', messages: [{ role: 'user', content: 'hi' }] }),
        (err) => {
            assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err && err.constructor.name}`);
            assert.equal(err.status, 401);
            assert.equal(err.code, 'unauthorized');
            return true;
        }
    );
    await assert.rejects(bad.models.list(), OpenAI.AuthenticationError);
});

check('an unknown model is a NotFoundError with code model_not_found', async () => {
    await assert.rejects(
        client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
        (err) => {
            assert.ok(err instanceof OpenAI.NotFoundError, `got ${err && err.constructor.name}`);
            assert.equal(err.code, 'model_not_found');
            assert.equal(err.param, 'model');
            return true;
        }
    );
});

check('a bad request is a BadRequestError naming the field', async () => {
    await assert.rejects(client.chat.completions.create({ model: 'sift', messages: [] }), (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `got ${err && err.constructor.name}`);
        assert.equal(err.code, 'invalid_request');
        assert.equal(err.type, 'invalid_request_error');
        assert.equal(err.param, 'messages');
        assert.match(err.message, /messages: must be a non-empty array/);
        return true;
    });
});

if (slowURL) {
    const slow = new OpenAI({ baseURL: slowURL, apiKey: 'unused', maxRetries: 0 });
    check('a run that fails mid-stream raises an APIError from the iterator', async () => {
        const stream = await slow.chat.completions.create({
            model: 'sift',
            messages: [{ role: 'user', content: question }],
            stream: true,
        });
        let text = '';
        await assert.rejects(
            (async () => {
                for await (const chunk of stream) text += chunk.choices[0]?.delta?.content || '';
            })(),
            (err) => {
                assert.ok(err instanceof OpenAI.APIError, `got ${err && err.constructor.name}`);
                assert.equal(err.code, 'deadline_exceeded');
                assert.equal(err.type, 'server_error');
                return true;
            }
        );
        assert.ok(text.length > 0, 'some of the answer came before the failure');
    });
    check('a run that fails in one piece is a 504 InternalServerError', async () => {
        await assert.rejects(
            slow.chat.completions.create({ model: 'sift', messages: [{ role: 'user', content: question }] }),
            (err) => {
                assert.ok(err instanceof OpenAI.InternalServerError, `got ${err && err.constructor.name}`);
                assert.equal(err.status, 504);
                assert.equal(err.code, 'deadline_exceeded');
                return true;
            }
        );
    });
}

(async () => {
    let failures = 0;
    for (const { name, fn } of checks) {
        try {
            await fn();
            console.log('ok   ' + name);
        } catch (err) {
            failures++;
            console.log('FAIL ' + name + ': ' + (err && err.stack ? err.stack : err));
        }
    }
    console.log(`${checks.length - failures}/${checks.length} checks passed`);
    process.exit(failures ? 1 : 0);
})();
