// The official openai SDK for Node against `deepseek serve` (run by test_serve_sdk.sh).
// Environment: DS_URL (server base URL), DS_KEY (a valid key), DS_MODEL_NAME.
// Prints "ok - ..." / "FAIL - ..." lines; exits 1 if anything failed.
import OpenAI from 'openai';

const url = process.env.DS_URL, key = process.env.DS_KEY, model = process.env.DS_MODEL_NAME;
let fails = 0;
function check(cond, what) {
  console.log((cond ? 'ok - ' : 'FAIL - ') + what);
  if (!cond) fails++;
}

// maxRetries 0: a test must see the server's first answer, not the SDK's retries.
const client = new OpenAI({ baseURL: url + '/v1', apiKey: key, maxRetries: 0, timeout: 60000 });
const messages = [{ role: 'user', content: 'Hello there' }];

async function main() {
  const r = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 12 });
  const msg = r.choices[0].message;
  const text = (msg.reasoning_content || '') + (msg.content || '');
  check(r.object === 'chat.completion' && r.model === model && msg.role === 'assistant' &&
        r.usage.completion_tokens === 12 && r.choices[0].finish_reason === 'length',
        `chat completion via the SDK (${JSON.stringify(text.slice(0, 30))})`);

  const stream = await client.chat.completions.create({
    model, messages, temperature: 0, max_tokens: 12, stream: true,
    stream_options: { include_usage: true },
  });
  let streamed = '', usage = null, nChunks = 0, finish = null;
  for await (const chunk of stream) {
    nChunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      streamed += (ch.delta.reasoning_content || '') + (ch.delta.content || '');
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  check(nChunks > 2 && streamed === text && finish === 'length' && usage &&
        usage.completion_tokens === 12 && usage.total_tokens === r.usage.total_tokens,
        `streamed completion with include_usage equals the plain one (${nChunks} chunks)`);

  const bad = new OpenAI({ baseURL: url + '/v1', apiKey: 'sk-not-a-valid-key', maxRetries: 0 });
  try {
    await bad.chat.completions.create({ model, messages, max_tokens: 1 });
    check(false, 'a bad key raises AuthenticationError (the call succeeded)');
  } catch (e) {
    check(e instanceof OpenAI.AuthenticationError && e.status === 401 &&
          e.code === 'invalid_api_key' && e.type === 'authentication_error',
          `a bad key raises AuthenticationError (${e.constructor.name} ${e.status} ${e.code})`);
  }
  try {
    await client.chat.completions.create({ model: 'gpt-4o', messages, max_tokens: 1 });
    check(false, 'an unknown model raises NotFoundError (the call succeeded)');
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError && e.code === 'model_not_found' && e.param === 'model',
          `an unknown model raises NotFoundError (${e.constructor.name} ${e.status} ${e.code})`);
  }
  try {
    await client.chat.completions.create({ model, messages, temperature: 7 });
    check(false, 'temperature 7 raises BadRequestError (the call succeeded)');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.code === 'invalid_value' &&
          e.param === 'temperature',
          `temperature 7 raises BadRequestError (${e.constructor.name} ${e.status} ${e.param})`);
  }
  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === model, 'models.list() names the model');
}

main().then(() => process.exit(fails ? 1 : 0), (e) => {
  console.log('FAIL - unexpected exception: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
