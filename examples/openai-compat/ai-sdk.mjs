// Ask Jelly through its AI SDK endpoint (POST /api/chat) the way `useChat` does: the AI
// SDK's own transport sends the chat, its stream reader builds the assistant message.
//   node ai-sdk.mjs http://localhost:8080 <API key or ''> "What is 20000 / 33.3?"
// Prints the message's parts: tool calls with their output, text, sources.
import { DefaultChatTransport, readUIMessageStream } from 'ai';

export async function ask(url, { apiKey, userToken, chatId = `node-${Date.now()}`, question }) {
  const headers = {};
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (userToken) headers['X-User-Token'] = userToken;
  const transport = new DefaultChatTransport({ api: `${url}/api/chat`, headers });
  const stream = await transport.sendMessages({
    trigger: 'submit-message',
    chatId,
    messageId: undefined,
    abortSignal: undefined,
    messages: [{ id: 'q1', role: 'user', parts: [{ type: 'text', text: question }] }],
  });
  let message;
  for await (const update of readUIMessageStream({ stream, terminateOnError: true })) {
    message = update;
  }
  return message;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [url = 'http://localhost:8080', apiKey = process.env.JELLY_API_KEY, question = 'Hi!'] =
    process.argv.slice(2);
  try {
    const message = await ask(url, { apiKey, userToken: apiKey ? undefined : 'ai-sdk-example', question });
    for (const part of message.parts) {
      if (part.type === 'dynamic-tool') {
        console.log(`tool ${part.toolName} ${JSON.stringify(part.input)} [${part.state}]: ${part.output ?? part.errorText}`);
      } else if (part.type === 'text') {
        console.log(part.text);
      } else if (part.type === 'source-url') {
        console.log(`source: ${part.title} ${part.url}`);
      }
    }
  } catch (err) {
    console.error(`${err.constructor.name}: ${err.message}`);
    process.exit(1);
  }
}
