// The official Node OpenAI SDK, used as applications use it, against a base
// URL. Each input line `<case> <baseURL>` runs one case with a new client and
// prints one line of JSON: what the application saw, and how many HTTP
// attempts the SDK made. e2e/node_test.go starts the local mesh, feeds the
// cases (one process for many: Node takes a while to start) and asserts what
// they print. `node clients.mjs <case> <baseURL>` runs one case by hand.
import { createInterface } from 'node:readline';
import OpenAI from 'openai';

let attempts = 0;
let client;
let mangle = null; // rewrites the request body a case sends, when set
const model = 'gpt-4.1';
const messages = [{ role: 'user', content: 'count the sheep of the mesh' }];

const cases = {
  // Chat completions, JSON.
  async chat() {
    const r = await client.chat.completions.create({ model, messages });
    return { content: r.choices[0].message.content, usage: r.usage };
  },
  // The loop of countless tutorials: it reads the first choice of every
  // chunk, and throws on a chunk without choices.
  async tutorial() {
    const stream = await client.chat.completions.create({ model, messages, stream: true });
    let out = '';
    for await (const c of stream) out += c.choices[0].delta.content;
    return { out };
  },
  async tutorialUsageFalse() {
    const stream = await client.chat.completions.create({
      model, messages, stream: true, stream_options: { include_usage: false },
    });
    let out = '';
    for await (const c of stream) out += c.choices[0].delta.content;
    return { out };
  },
  // The SDK's stream helper, its content events and final completion.
  async helper() {
    const stream = client.chat.completions.stream({ model, messages });
    let out = '';
    stream.on('content', (delta) => { out += delta; });
    const done = await stream.finalChatCompletion();
    return { out, content: done.choices[0].message.content, usage: done.usage ?? null };
  },
  async helperUsage() {
    const stream = client.chat.completions.stream({
      model, messages, stream_options: { include_usage: true },
    });
    const done = await stream.finalChatCompletion();
    return { content: done.choices[0].message.content, usage: done.usage ?? null };
  },
  // The Responses API, JSON and streamed (usage in response.completed).
  async responses() {
    const r = await client.responses.create({ model, input: 'count the sheep' });
    return { text: r.output_text, status: r.status, usage: r.usage };
  },
  async responsesStream() {
    const stream = await client.responses.create({ model, input: 'count the sheep', stream: true });
    let text = '';
    let usage = null;
    const types = {};
    for await (const ev of stream) {
      types[ev.type] = (types[ev.type] ?? 0) + 1;
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed') usage = ev.response.usage;
    }
    return { text, usage, types };
  },
  async responsesHelper() {
    const stream = client.responses.stream({ model, input: 'count the sheep' });
    const done = await stream.finalResponse();
    return { text: done.output_text, usage: done.usage };
  },
  // Embeddings: the SDK asks for base64 and decodes it to numbers.
  async embeddings() {
    const r = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a sheep', 'the mesh'] });
    return { count: r.data.length, dims: r.data[0].embedding.length, numbers: typeof r.data[0].embedding[0] === 'number', model: r.model, usage: r.usage };
  },
  // Two calls in a row on a route that admits one: the second is refused
  // with retry-after-ms, and the SDK waits that long and retries it.
  async twice() {
    await client.chat.completions.create({ model, messages });
    attempts = 0;
    const r = await client.chat.completions.create({ model, messages });
    return { content: r.choices[0].message.content };
  },
  // A body that is not JSON (cut short on its way, as a broken proxy or
  // client library would send it).
  async invalidJson() {
    mangle = (body) => body.slice(0, 20);
    await client.chat.completions.create({ model, messages });
    return {};
  },
  // A body over the route's maxBodyBytes.
  async large() {
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'baa '.repeat(400) }] });
    return {};
  },
};

async function runCase(name, baseURL) {
  const run = cases[name];
  if (!run) return { fatal: `no case ${name}` };
  attempts = 0;
  mangle = null;
  client = new OpenAI({
    baseURL,
    apiKey: 'sk-the-applications-own-key',
    // Counts the HTTP attempts the SDK's own retry loop makes.
    fetch: (url, init) => {
      attempts++;
      if (mangle && typeof init?.body === 'string') init = { ...init, body: mangle(init.body) };
      return fetch(url, init);
    },
  });
  try {
    const result = await run();
    return { ok: true, attempts, result };
  } catch (e) {
    return {
      ok: false,
      attempts,
      error: {
        class: e?.constructor?.name ?? typeof e,
        message: String(e?.message ?? e),
        status: e?.status ?? null,
        code: e?.code ?? null,
        type: e?.type ?? null,
        shouldRetry: e?.headers?.get?.('x-should-retry') ?? null,
        retryAfterMs: e?.headers?.get?.('retry-after-ms') ?? null,
        shepherdAttempts: e?.headers?.get?.('x-shepherd-attempts') ?? null,
      },
    };
  }
}

if (process.argv.length > 3) {
  console.log(JSON.stringify(await runCase(process.argv[2], process.argv[3])));
} else {
  for await (const line of createInterface({ input: process.stdin })) {
    const [name, baseURL] = line.trim().split(/\s+/);
    if (name) console.log(JSON.stringify(await runCase(name, baseURL)));
  }
}
