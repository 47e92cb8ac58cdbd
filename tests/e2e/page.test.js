// The search page in a real browser: playwright-core driving Debian's
// chromium, headless, against `sift serve` with the sample catalog and the
// offline planner. Run by tests/integration/test_page.sh:
//
//     node page.test.js <open server URL> <server-with-a-key URL> <its API key> <slow URL>
//
// The open server writes the answer at 40 ms a word, so the streaming can be
// watched. The slow server's runs all miss their deadline. Exits 0 when every check passed, 1 otherwise (each failure
// printed).
'use strict';
const assert = require('assert/strict');
const { chromium } = require('playwright-core');

const [url, keyedUrl, apiKey, slowUrl] = process.argv.slice(2);
if (!url || !keyedUrl || !apiKey || !slowUrl) {
    console.error('usage: node page.test.js <url> <keyed url> <api key> <slow url>');
    process.exit(2);
}
const QUESTION = 'Nike running shoes size 42, in stock in Hanoi, Da Nang or Ho Chi Minh City?';
const TIMEOUT = 20000;

const checks = [];
function check(name, fn) {
    checks.push({ name, fn });
}

async function apiProduct(base, sku, key) {
    const res = await fetch(`${base}/v1/products/${encodeURIComponent(sku)}`, {
        headers: key ? { Authorization: `Bearer ${key}` } : {},
    });
    assert.equal(res.status, 200, `GET /v1/products/${sku}`);
    return res.json();
}

async function metric(base, line) {
    const text = await (await fetch(`${base}/metrics`)).text();
    const m = text.split('\n').find((l) => l.startsWith(line + ' '));
    return m ? Number(m.split(' ')[1]) : 0;
}

// Records, in the page, every state each timeline entry goes through and the
// answer's length at every change, from before the search starts.
async function watch(page) {
    await page.evaluate(() => {
        // data-state as each change found it (oldValue), so two changes
        // within one observer batch are both seen; the state now is added
        // when the states are read
        window.__states = {};
        window.__lengths = [];
        const tl = document.getElementById('timeline');
        new MutationObserver((muts) => {
            for (const m of muts) {
                if (m.type !== 'attributes' || m.target.tagName !== 'LI') continue;
                const li = m.target;
                (window.__states[li.dataset.id] ||= { name: li.dataset.name, seen: [] })
                    .seen.push(m.oldValue);
            }
        }).observe(tl, { subtree: true, attributes: true, attributeOldValue: true,
            attributeFilter: ['data-state'] });
        const ans = document.getElementById('answer');
        new MutationObserver(() => window.__lengths.push(ans.textContent.length)).observe(ans, {
            childList: true, characterData: true, subtree: true,
        });
    });
}

async function waitAnswered(page) {
    await page.waitForFunction(
        () => /^Answered in/.test(document.getElementById('status').textContent),
        null, { timeout: TIMEOUT });
}

async function cardsLoaded(page, n) {
    await page.waitForFunction(
        (k) => document.querySelectorAll('.card[data-state="loaded"]').length >= k,
        n, { timeout: TIMEOUT });
}

// What a card shows: its SKU, price text and stock per warehouse.
function readCards(page) {
    return page.$$eval('.card', (cards) => cards.map((c) => ({
        sku: c.dataset.sku,
        state: c.dataset.state,
        title: c.querySelector('.title').textContent,
        price: c.querySelector('.price').textContent,
        mentioned: c.classList.contains('mentioned'),
        variants: c.querySelector('.variants').textContent,
        stock: Object.fromEntries(Array.from(c.querySelectorAll('.stock li'),
            (li) => [li.dataset.warehouse, Number(li.dataset.quantity)])),
    })));
}

let browser;

check('desktop: streaming answer, tool timeline, product cards', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    // no script error, no CSP violation, no failed request on the way
    const problems = [];
    page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
    page.on('requestfailed', (r) => problems.push('failed: ' + r.url()));
    await page.goto(url + '/');
    assert.equal(await page.title(), 'sift: product search');
    await watch(page);
    // the question box has the focus from the start: type and press Enter
    assert.equal(await page.evaluate(() => document.activeElement.id), 'q');
    await page.keyboard.type(QUESTION);
    await page.keyboard.press('Enter');

    // the answer grows while the run streams: sample it as it is written
    const samples = [];
    const t0 = Date.now();
    while (Date.now() - t0 < TIMEOUT) {
        const [len, busy] = await page.evaluate(() => {
            const a = document.getElementById('answer');
            return [a.textContent.length, a.getAttribute('aria-busy')];
        });
        samples.push(len);
        if (busy === 'false' && len > 0) break;
        await page.waitForTimeout(150);
    }
    const final = samples[samples.length - 1];
    const partial = new Set(samples.filter((n) => n > 0 && n < final));
    assert.ok(partial.size >= 2, `answer seen at ${partial.size} partial lengths: ${samples}`);
    const lengths = await page.evaluate(() => window.__lengths.filter((n) => n > 0));
    assert.ok(lengths.length >= 10, `the answer changed ${lengths.length} times (one per token)`);
    await waitAnswered(page);

    const answer = await page.textContent('#answer');
    assert.match(answer, /^I found /);
    assert.match(answer, /Da Nang \(DAD\)/);
    assert.equal(await page.getAttribute('#answer', 'aria-live'), 'polite');

    // every tool call was shown running, then finished, with its duration
    const states = await page.evaluate(() => {
        for (const li of document.querySelectorAll('#timeline li')) {
            const s = (window.__states[li.dataset.id] ||= { name: li.dataset.name, seen: [] });
            s.seen.push(li.dataset.state);
        }
        return window.__states;
    });
    const calls = Object.values(states);
    assert.equal(calls.length, 5, JSON.stringify(states));
    for (const c of calls) assert.deepEqual(c.seen, ['running', 'ok'], JSON.stringify(c));
    const names = calls.map((c) => c.name);
    assert.ok(names.includes('search_products') && names.includes('check_inventory') &&
        names.includes('get_price'), names.join(','));
    const items = await page.$$eval('#timeline li', (lis) => lis.map((li) => li.textContent));
    for (const t of items) assert.match(t, /done in [0-9.]+ ms/);

    // product cards: stock per warehouse and price, as the API says
    await cardsLoaded(page, 5);
    const cards = await readCards(page);
    assert.ok(cards.length >= 5, `cards: ${cards.length}`);
    assert.ok(cards[0].mentioned, 'the product the answer is about comes first');
    assert.ok(answer.includes(cards[0].sku));
    for (const c of cards) {
        const p = await apiProduct(url, c.sku);
        assert.equal(c.title, p.title);
        const want = Object.fromEntries(p.stock.map((s) => [s.code, s.quantity]));
        assert.deepEqual(c.stock, want, c.sku);
        assert.deepEqual(Object.keys(c.stock).sort(), ['DAD', 'HAN', 'SGN']);
        const vnd = p.prices.find((x) => x.currency === 'VND');
        const digits = String(vnd.amount).replace(/\B(?=(\d{3})+(?!\d))/g, '.');
        assert.ok(c.price.includes(digits), `price "${c.price}" lacks ${digits}`);
        // the other sizes of its colour, from the product's variants
        const mine = p.attributes;
        const sizes = p.variants.filter((v) => v.sku !== p.sku && v.attributes.colour === mine.colour)
            .map((v) => v.attributes.size);
        if (sizes.length) assert.ok(c.variants.includes('sizes ' + sizes.join(', ')), c.variants);
    }

    // a follow-up continues the conversation (the session id is kept)
    const sid = await page.evaluate(() => sessionStorage.getItem('sift.session'));
    assert.match(sid, /^web-[0-9a-f]{24}$/);
    await page.fill('#q', 'what about size 43?');
    await page.press('#q', 'Enter');
    await page.waitForFunction(() => /size 43/.test(document.getElementById('answer').textContent),
        null, { timeout: TIMEOUT });
    await waitAnswered(page);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sift.session')), sid);
    assert.deepEqual(problems, []);
    await ctx.close();
});

check('Esc stops the answer and the server cancels the run', async () => {
    const cancelled = 'sift_runs_finished_total{reason="cancelled"}';
    const before = await metric(url, cancelled);
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(url + '/');
    await page.keyboard.type(QUESTION);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.getElementById('answer').textContent.length > 10,
        null, { timeout: TIMEOUT });
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => /^Stopped/.test(document.getElementById('status').textContent),
        null, { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('#answer', 'aria-busy'), 'false');
    assert.equal(await page.isHidden('#stop'), true);
    assert.equal(await page.isEnabled('#go'), true);
    const len = (await page.textContent('#answer')).length;
    await page.waitForTimeout(500);
    assert.equal((await page.textContent('#answer')).length, len, 'the answer grew after Esc');
    let after = before;
    for (let i = 0; i < 50 && after <= before; i++) {
        await page.waitForTimeout(100);
        after = await metric(url, cancelled);
    }
    assert.ok(after > before, `cancelled runs: ${before} -> ${after}`);
    await ctx.close();
});

check('a new question while one is answered replaces it cleanly', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(url + '/');
    await watch(page);
    await page.keyboard.type(QUESTION);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.getElementById('answer').textContent.length > 10,
        null, { timeout: TIMEOUT });
    await page.fill('#q', 'Is NIKE-PEG40-43 in stock in Da Nang?');
    await page.press('#q', 'Enter');
    await waitAnswered(page);
    assert.match(await page.textContent('#answer'), /NIKE-PEG40-43/);
    assert.equal(await page.isHidden('#error'), true);
    const states = await page.$$eval('#timeline li', (lis) => lis.map((li) => li.dataset.state));
    assert.ok(states.length > 0 && states.every((s) => s === 'ok'), states.join(','));
    const skus = (await readCards(page)).map((c) => c.sku);
    assert.ok(skus.includes('NIKE-PEG40-43'), skus.join(','));
    await ctx.close();
});

check('phone: no horizontal scroll, everything inside the screen', async () => {
    const ctx = await browser.newContext({
        viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    });
    const page = await ctx.newPage();
    await page.goto(url + '/');
    const vp = await page.$eval('meta[name=viewport]', (m) => m.content);
    assert.match(vp, /width=device-width/);
    await page.fill('#q', QUESTION);
    await page.tap('#go');
    await waitAnswered(page);
    await cardsLoaded(page, 5);
    const m = await page.evaluate(() => ({
        scroll: document.documentElement.scrollWidth,
        client: document.documentElement.clientWidth,
        widest: Math.max(...Array.from(document.querySelectorAll('body *'),
            (e) => e.getBoundingClientRect().right)),
    }));
    assert.ok(m.scroll <= m.client, `horizontal scroll: ${m.scroll} > ${m.client}`);
    assert.ok(m.widest <= m.client + 0.5, `an element ends at ${m.widest} px of ${m.client}`);
    // buttons big enough for a finger
    const h = await page.$eval('#go', (b) => b.getBoundingClientRect().height);
    assert.ok(h >= 40, `Search button is ${h} px high`);
    await ctx.close();
});

check('keyboard only: Tab, Enter, visible focus, /', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(url + '/');
    // the box has the focus; before it comes the skip link, shown when focused
    assert.equal(await page.evaluate(() => document.activeElement.id), 'q');
    await page.keyboard.press('Shift+Tab');
    assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
    assert.ok((await page.$eval('.skip', (a) => a.getBoundingClientRect().left)) >= 0);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'q');
    await page.keyboard.type(QUESTION);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'go');
    const outline = await page.evaluate(() => {
        const s = getComputedStyle(document.activeElement);
        return [s.outlineStyle, parseFloat(s.outlineWidth)];
    });
    assert.ok(outline[0] !== 'none' && outline[1] >= 2, `focus outline: ${outline}`);
    await page.keyboard.press('Enter');
    await waitAnswered(page);
    // "/" comes back to the box from anywhere
    await page.keyboard.press('Tab');
    assert.notEqual(await page.evaluate(() => document.activeElement.id), 'q');
    await page.keyboard.press('/');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'q');
    // "New conversation" is reachable and works from the keyboard
    const before = await page.evaluate(() => sessionStorage.getItem('sift.session'));
    await page.focus('#new');
    await page.keyboard.press('Enter');
    assert.equal(await page.textContent('#answer'), '');
    assert.notEqual(await page.evaluate(() => sessionStorage.getItem('sift.session')), before);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'q');
    await ctx.close();
});

check('errors are shown: a question over the limit (413)', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(url + '/');
    await page.evaluate(() => { document.getElementById('q').value = 'a'.repeat(3000); });
    await page.press('#q', 'Enter');
    await page.waitForSelector('#error:not([hidden])', { timeout: TIMEOUT });
    assert.match(await page.textContent('#error'), /longer than 2048 bytes \(too_large\)/);
    await ctx.close();
});

check('errors are shown: a run that misses its deadline', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(slowUrl + '/');
    await page.keyboard.type(QUESTION);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#error:not([hidden])', { timeout: TIMEOUT });
    assert.match(await page.textContent('#error'),
        /^The run stopped: deadline of 300 ms exceeded \(deadline_exceeded\)$/);
    await page.waitForFunction(() => /^Stopped after/.test(document.getElementById('status').textContent),
        null, { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('#answer', 'aria-busy'), 'false');
    await ctx.close();
});

check('API key: asked for only when the server has keys; ?key= works', async () => {
    // the open server asks for none
    let ctx = await browser.newContext();
    let page = await ctx.newPage();
    await page.goto(url + '/');
    await page.waitForLoadState('networkidle');
    assert.equal(await page.isHidden('#keybox'), true);
    await ctx.close();

    // the server with keys: the field appears; a search without the key says why
    ctx = await browser.newContext();
    page = await ctx.newPage();
    await page.goto(keyedUrl + '/');
    await page.waitForSelector('#keybox:not([hidden])', { timeout: TIMEOUT });
    await page.fill('#q', QUESTION);
    await page.press('#q', 'Enter');
    await page.waitForSelector('#error:not([hidden])', { timeout: TIMEOUT });
    assert.match(await page.textContent('#error'), /API key.*unauthorized/);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'key');
    // typing the key and Enter runs the search with it
    await page.keyboard.type(apiKey);
    await page.keyboard.press('Enter');
    await waitAnswered(page);
    await cardsLoaded(page, 1);
    assert.equal(await page.isHidden('#error'), true);
    await ctx.close();

    // ?key= is kept for the tab and removed from the address bar
    ctx = await browser.newContext();
    page = await ctx.newPage();
    await page.goto(`${keyedUrl}/?key=${encodeURIComponent(apiKey)}&q=${encodeURIComponent(QUESTION)}`);
    await waitAnswered(page);
    assert.ok(!page.url().includes('key='), page.url());
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sift.key')), apiKey);
    await cardsLoaded(page, 1);
    const [first] = await readCards(page);
    const p = await apiProduct(keyedUrl, first.sku, apiKey);
    assert.deepEqual(first.stock, Object.fromEntries(p.stock.map((s) => [s.code, s.quantity])));
    assert.equal(await page.isHidden('#keybox'), true);
    await ctx.close();
});

(async () => {
    browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    let failed = 0;
    for (const c of checks) {
        try {
            await c.fn();
            console.log(`ok   ${c.name}`);
        } catch (e) {
            failed++;
            console.log(`FAIL ${c.name}\n     ${(e.stack || String(e)).split('\n').slice(0, 4).join('\n     ')}`);
        }
    }
    await browser.close();
    process.exit(failed ? 1 : 0);
})().catch(async (e) => {
    console.error(e);
    if (browser) await browser.close();
    process.exit(1);
});
