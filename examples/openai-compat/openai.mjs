// Ask Jelly through its OpenAI-compatible API with the official `openai` package.
//   node openai.mjs http://localhost:8080 <API key> "How many DFI for a masternode?"
// Prints the tools Jelly ran (streamed as `reasoning_content`), then the answer.
import OpenAI from 'openai';

export async function ask(url, apiKey, question, user = 'openai-node-example') {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: 'jelly',
    user,
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: question }],
  });
  let answer = '';
  let reasoning = '';
  let usage = null;
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta ?? {};
    reasoning += delta.reasoning_content ?? '';
    answer += delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  return { answer, reasoning, usage };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [url = 'http://localhost:8080', apiKey = process.env.JELLY_API_KEY, question = 'Hi!'] =
    process.argv.slice(2);
  try {
    const { answer, reasoning, usage } = await ask(url, apiKey, question);
    process.stdout.write(`${reasoning}${answer}\nusage: ${JSON.stringify(usage)}\n`);
  } catch (err) {
    console.error(`${err.constructor.name}: ${err.message}`);
    process.exit(1);
  }
}
